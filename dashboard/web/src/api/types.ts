// The JSON shapes of the HTTP API (dashboard/API.md). Times are float epoch
// seconds. Fields a newer server adds are optional here, so the dashboard keeps working against an
// older one (and shows "not reported" instead of crashing).

export const JOB_STATES = [
  "enqueued",
  "scheduled",
  "reserved",
  "running",
  "succeeded",
  "retrying",
  "dead",
  "cancelled",
] as const;
export type JobState = (typeof JOB_STATES)[number];

/** States a job can still leave without a user's action (work still to do). */
export const PENDING_STATES: readonly JobState[] = ["enqueued", "scheduled", "reserved", "running", "retrying"];

export interface Attempt {
  attempt: number;
  at: number;
  error: string;
  traceback: string | null;
}

export interface Transition {
  state: string;
  at: number;
}

export interface Backoff {
  kind: string;
  base: number;
  factor: number;
  cap: number;
  jitter: boolean;
  /** Kind "delays" only: the delay before each retry, in seconds. */
  delays?: number[] | null;
}

export interface Job {
  id: string;
  queue: string;
  name: string;
  payload: unknown;
  state: string;
  priority: number;
  created_at: number;
  updated_at: number;
  run_at: number | null;
  attempts: number;
  max_attempts: number;
  backoff: Backoff | null;
  timeout: number;
  idempotency_key: string | null;
  headers: Record<string, string> | null;
  errors: Attempt[];
  result: unknown;
  history: Transition[];
  lease_until: number | null;
  worker: string | null;
  /** The last progress the running job reported (memory only: null once final or after a restart). */
  progress?: Progress | null;
}

/** `ctx.progress(value, message)` of a running job, as the server last received it. */
export interface Progress {
  /** 0.0 to 1.0, or null for a message alone. */
  value: number | null;
  message: string | null;
  /** When the server received it (epoch seconds). */
  at: number;
}

export interface JobPage {
  jobs: Job[];
  next_cursor?: string | null;
}

export interface Queue {
  name: string;
  paused: boolean;
  durability: string;
  counts: Record<string, number>;
  total: number;
  latency: number;
  enqueued_per_s: number;
  processed_per_s: number;
}

export interface Totals {
  enqueued: number;
  succeeded: number;
  failed: number;
  retried: number;
  dead: number;
  cancelled: number;
  deleted: number;
}

export interface ServerInfo {
  id?: string;
  host?: string;
  pid?: number;
  version?: string;
  started_at?: number;
  durability?: string;
  /** Binary protocol URLs (tcp://..., quic://...). */
  listen?: string | string[];
  http?: string;
  /** --trace-url-template: a trace's URL with `{trace_id}` where the id goes (null: none). */
  trace_url_template?: string | null;
}

export interface Stats {
  total_jobs: number;
  counts: Record<string, number>;
  queues: number;
  workers: number;
  connections: number;
  totals: Totals;
  uptime: number;
  server?: ServerInfo;
  servers?: ServerInfo[];
  /** Present on the SSE `stats` event: when the server sampled it. */
  at?: number;
}

export interface Worker {
  id: string;
  name: string;
  kind: string;
  host?: string | null;
  pid?: number | null;
  concurrency?: number | null;
  queues: string[];
  in_flight?: number;
  /** The older name of in_flight. */
  jobs?: number;
  active: boolean;
  credits: number | null;
  connected_at?: number | null;
  last_seen: number | null;
}

export interface WorkerList {
  workers: Worker[];
  possibly_aborted?: Job[];
}

export interface HistoryPoint {
  at: number;
  enqueued: number;
  succeeded: number;
  failed: number;
}

export interface StatsHistory {
  step: number;
  points: HistoryPoint[];
}

/** A job definition (GET /api/job-definitions): the defaults every enqueue of the job gets for the
 * options it leaves unset, and the JSON Schema of its payload. */
export interface JobDefinition {
  name: string;
  queue: string | null;
  priority: number;
  max_attempts: number | null;
  backoff: Backoff | null;
  timeout_ms: number | null;
  schema: unknown;
  validate: boolean;
  registered_by: string;
  created_at: number;
  updated_at: number;
}

export interface Schedule {
  name: string;
  cron: string;
  timezone?: string;
  queue?: string;
  job?: string;
  paused?: boolean;
  next_run_at?: number | null;
  last_run_at?: number | null;
  last_job_id?: string | null;
  last_job_state?: string | null;
}

export type BulkAction = "retry" | "requeue" | "cancel" | "delete";

export interface JobFilter {
  queue?: string;
  state?: string[];
  name?: string;
  before?: string;
  after?: string;
}

export interface BulkResult {
  matched: number;
  done: number;
  failed: number;
}

/** The changes since the previous one (`event: jobs` on /api/events?jobs=batched): the newest ids
 * and their queues; `more` when other jobs changed too. */
export interface JobsEvent {
  ids: string[];
  queues: string[];
  more: boolean;
}

/** The live event of a job's change (`event: job` on /api/events). */
export interface JobEvent {
  id: string;
  queue: string;
  name: string;
  state: string;
  at: number;
  attempts: number;
}
