/**
 * Spitfire's TypeScript SDK: `Client` (enqueue and manage jobs, queues, schedules), `App` with
 * typed jobs, and `Worker`, over Spitfire's binary protocol on TCP.
 */

export { App, DEFAULT_QUEUE, job, JobHandle } from "./app.js";
export type { Handler, JobContext, JobOptions, PayloadSchema } from "./app.js";
export { Client, DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_TIMEOUT_MS, Schedules } from "./client.js";
export type {
  ClientOptions,
  Durability,
  EnqueueManyOptions,
  EnqueueOptions,
  JobRef,
  ListJobsOptions,
  ScheduleDefinition,
  WaitOptions,
} from "./client.js";
export { DEFAULT_URL, SDK_VERSION } from "./connection.js";
export {
  BadRequest,
  Busy,
  ClientClosed,
  Conflict,
  ConnectionLost,
  InvalidURL,
  JobCancelled,
  JobError,
  JobFailed,
  JobNotFound,
  NoSpace,
  NotConnected,
  NotFound,
  NotLeader,
  ProtocolError,
  QueueNotFound,
  RequestTimeout,
  ScheduleNotFound,
  ServerError,
  SpitfireError,
  TooLarge,
  Unauthorized,
  UnsupportedVersion,
  WaitTimeout,
} from "./errors.js";
export { FINAL_STATES, JobId } from "./models.js";
export type {
  AttemptError,
  Backoff,
  Enqueued,
  Job,
  JobPage,
  JobState,
  Progress,
  PurgeResult,
  QueueStats,
  Schedule,
  ScheduleJobOptions,
  Stats,
  WaitFunction,
  WorkerInfo,
  JobDefinition,
  JobDefinitionSpec,
} from "./models.js";
export { Permanent, RetryAfter } from "./outcomes.js";
export { decodePayload, encodePayload } from "./payload.js";
export { DEFAULT_GRACE_MS, PROGRESS_INTERVAL_MS, Worker } from "./worker.js";
export type { WorkerCounts, WorkerOptions } from "./worker.js";
