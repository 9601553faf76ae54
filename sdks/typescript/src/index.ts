/**
 * Spitfire's TypeScript SDK: `Client` (enqueue and manage jobs, queues, schedules), `App` with
 * typed jobs, and `Worker`, over Spitfire's binary protocol on TCP.
 */

export { App, DEFAULT_QUEUE, JobHandle } from "./app.js";
export type { Handler, JobContext, JobOptions, PayloadSchema } from "./app.js";
export { Client, DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_TIMEOUT_MS, Schedules } from "./client.js";
export type { ClientOptions, EnqueueManyOptions, EnqueueOptions, ScheduleDefinition, WaitOptions } from "./client.js";
export { DEFAULT_URL, SDK_VERSION } from "./connection.js";
export {
  BadRequest,
  Busy,
  ClientClosed,
  Conflict,
  ConnectionLost,
  InvalidURL,
  JobFailed,
  JobNotFound,
  NoSpace,
  NotConnected,
  NotFound,
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
export type {
  AttemptError,
  Backoff,
  Enqueued,
  Job,
  JobState,
  QueueStats,
  Schedule,
  ScheduleJobOptions,
  Stats,
} from "./models.js";
export { Permanent, RetryAfter } from "./outcomes.js";
export { decodePayload, encodePayload } from "./payload.js";
export { DEFAULT_GRACE_MS, Worker } from "./worker.js";
export type { WorkerCounts, WorkerOptions } from "./worker.js";
