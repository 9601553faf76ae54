/**
 * What the client returns: jobs, stats and schedules as TypeScript objects (camelCase, times as
 * `Date`s, durations in milliseconds, payloads and results decoded from msgpack).
 */

import type { Body } from "./codec.js";
import { decodePayload } from "./payload.js";

/** A job's state label. */
export type JobState =
  | "scheduled"
  | "enqueued"
  | "reserved"
  | "running"
  | "succeeded"
  | "retrying"
  | "dead"
  | "cancelled";

/** A retry delay policy. Durations in milliseconds. */
export interface Backoff {
  kind: "exponential" | "fixed" | "linear" | "delays";
  baseMs?: number;
  factor?: number;
  capMs?: number;
  jitter?: boolean;
  /** kind `delays`: one delay per retry (the last for every later one). */
  delaysMs?: number[] | null;
}

/** One failed attempt. */
export interface AttemptError {
  attempt: number;
  at: Date;
  error: string;
  traceback: string | null;
}

/** The last progress a running job reported (`ctx.progress`). */
export interface Progress {
  /** 0.0 to 1.0, or null for a message alone. */
  value: number | null;
  message: string | null;
  /** When the server received it. */
  at: Date;
}

/** A job as the server holds it. */
export interface Job {
  id: string;
  queue: string;
  name: string;
  state: JobState;
  priority: number;
  /** The payload decoded from msgpack (the raw bytes if they are not msgpack). */
  payload: unknown;
  rawPayload: Uint8Array;
  createdAt: Date;
  updatedAt: Date;
  runAt: Date | null;
  attempts: number;
  maxAttempts: number;
  backoff: Backoff | null;
  timeoutMs: number;
  idempotencyKey: string | null;
  headers: Record<string, string> | null;
  errors: AttemptError[];
  /** The handler's return value decoded from msgpack (null when it returned nothing). */
  result: unknown;
  rawResult: Uint8Array | null;
  history: { state: JobState; at: Date }[];
  leaseUntil: Date | null;
  worker: string | null;
  /** The last progress of a job not finished yet (null when it reported none). */
  progress: Progress | null;
}

/** The states a job ends in: `wait` returns (or throws) once a job is in one. */
export const FINAL_STATES: readonly JobState[] = ["succeeded", "dead", "cancelled"];

/** Options of `wait`. */
export interface WaitOptions {
  /**
   * Give up after this many milliseconds with `WaitTimeout` (the job goes on). Default: no limit
   * (the client asks the server again every 5 minutes, and after a reconnect).
   */
  timeoutMs?: number | null;
}

/** Waits for a job: `Client.wait`, as a `JobId` holds it. */
export type WaitFunction = (jobId: string, options?: WaitOptions) => Promise<unknown>;

/** `util.inspect` (console.log in Node and Bun) shows a JobId as the id it is. */
const INSPECT: unique symbol = Symbol.for("nodejs.util.inspect.custom");

/**
 * A job's id as `enqueue` returns it: a `String` object holding the id (so template literals,
 * string methods, `JSON.stringify`, `==` and payloads see the id itself) that also says whether
 * the enqueue `created` the job (false: its idempotency key named an existing job) and can
 * `wait()` for its outcome. Every method of this SDK that takes a job id takes a `JobId` too.
 *
 * It is an object, not a primitive: compare with `===`, use as a `Map` key or hand to code that
 * checks `typeof x === "string"` (database drivers) its primitive, `jobId.id` (or `String(jobId)`).
 */
export class JobId extends String implements Enqueued {
  /** The id as a primitive string. */
  readonly id: string;
  /** False when the idempotency key already named this job and nothing was added. */
  readonly created: boolean;
  /** The job's state when the enqueue was answered (`enqueued` or `scheduled` for a new job). */
  readonly state: JobState;
  readonly #wait: WaitFunction | null;

  constructor(id: string, options: { created?: boolean; state?: JobState; wait?: WaitFunction | null } = {}) {
    super(id);
    this.id = id;
    this.created = options.created ?? true;
    this.state = options.state ?? "enqueued";
    this.#wait = options.wait ?? null;
  }

  /** `client.wait(id, options)` with the client that enqueued it: the job's result once it succeeded. */
  wait(options: WaitOptions = {}): Promise<unknown> {
    if (this.#wait === null) {
      return Promise.reject(new TypeError(`JobId ${this.id} has no client to wait with: use client.wait(id)`));
    }
    return this.#wait(this.id, options);
  }

  override toString(): string {
    return this.id;
  }

  override valueOf(): string {
    return this.id;
  }

  /** `JSON.stringify` writes the id. */
  toJSON(): string {
    return this.id;
  }

  [INSPECT](): string {
    return this.id;
  }
}

/** A page of `listJobs`: the jobs, and the cursor of the next page (null: this was the last). */
export interface JobPage {
  jobs: Job[];
  cursor: string | null;
}

/** What `purge` did. */
export interface PurgeResult {
  /** Jobs in the asked states when the purge began. */
  matched: number;
  /** Jobs deleted (durably). */
  deleted: number;
  /** Jobs that could not be deleted (gone meanwhile). */
  failed: number;
}

/** A worker subscribed over the binary protocol, as `workers()` lists it. */
export interface WorkerInfo {
  /** The id the server gave it. */
  id: string;
  name: string;
  queues: string[];
  /** Jobs it holds (reserved or running). */
  held: number;
  /** False once it unsubscribed (draining). */
  active: boolean;
  /** Deliveries it can take now. */
  credits: number;
  connectedAt: Date;
  lastSeen: Date;
  host: string | null;
  pid: number | null;
  concurrency: number | null;
}

/** What ENQUEUED said. */
export interface Enqueued {
  id: string;
  /** False when the idempotency key already named this job and nothing was added. */
  created: boolean;
  state: JobState;
}

export interface QueueStats {
  name: string;
  paused: boolean;
  durability: string;
  counts: Record<JobState, number>;
  total: number;
}

export interface Stats {
  totalJobs: number;
  queues: QueueStats[];
  workers: number;
  connections: number;
}

/** Options of the job each tick of a schedule enqueues. */
export interface ScheduleJobOptions {
  priority?: number;
  maxAttempts?: number | null;
  backoff?: Backoff | number[] | null;
  timeoutMs?: number | null;
  headers?: Record<string, string> | null;
}

export interface Schedule {
  name: string;
  cron: string;
  timezone: string;
  queue: string;
  job: string;
  payload: unknown;
  rawPayload: Uint8Array;
  options: ScheduleJobOptions;
  misfire: "skip" | "once" | "all";
  paused: boolean;
  createdAt: Date;
  updatedAt: Date;
  nextRunAt: Date | null;
  lastRunAt: Date | null;
  lastJobId: string | null;
  lastJobState: JobState | null;
}

const date = (s: unknown): Date => new Date((s as number) * 1000);
const dateOrNull = (s: unknown): Date | null => (s === null || s === undefined ? null : date(s));
const ms = (s: unknown): number => Math.round((s as number) * 1e6) / 1e3;
const int = (v: unknown): number => Number(v);

export function backoffFromWire(b: unknown): Backoff | null {
  if (b === null || b === undefined) return null;
  const w = b as Body;
  return {
    kind: w.kind as Backoff["kind"],
    baseMs: ms(w.base),
    factor: w.factor as number,
    capMs: ms(w.cap),
    jitter: w.jitter as boolean,
    delaysMs: w.delays === null ? null : (w.delays as number[]).map(ms),
  };
}

/** The wire's Backoff of an SDK one (a list of delays in ms is kind `delays`). */
export function backoffToWire(b: Backoff | number[] | null | undefined): Body | null {
  if (b === null || b === undefined) return null;
  if (Array.isArray(b)) return { kind: "delays", base: 1, factor: 2, cap: 3600, jitter: false, delays: b.map((d) => d / 1000) };
  return {
    kind: b.kind,
    base: (b.baseMs ?? 1000) / 1000,
    factor: b.factor ?? 2,
    cap: (b.capMs ?? 3_600_000) / 1000,
    jitter: b.jitter ?? false,
    delays: b.delaysMs ? b.delaysMs.map((d) => d / 1000) : null,
  };
}

export function jobFromWire(w: Body): Job {
  const rawResult = w.result as Uint8Array | null;
  return {
    id: w.id as string,
    queue: w.queue as string,
    name: w.name as string,
    state: w.state as JobState,
    priority: int(w.priority),
    payload: decodePayload(w.payload as Uint8Array),
    rawPayload: w.payload as Uint8Array,
    createdAt: date(w.created_at),
    updatedAt: date(w.updated_at),
    runAt: dateOrNull(w.run_at),
    attempts: int(w.attempts),
    maxAttempts: int(w.max_attempts),
    backoff: backoffFromWire(w.backoff),
    timeoutMs: ms(w.timeout),
    idempotencyKey: w.idempotency_key as string | null,
    headers: w.headers as Record<string, string> | null,
    errors: (w.errors as Body[]).map((e) => ({
      attempt: int(e.attempt),
      at: date(e.at),
      error: e.error as string,
      traceback: e.traceback as string | null,
    })),
    result: rawResult === null ? null : decodePayload(rawResult),
    rawResult,
    history: (w.history as Body[]).map((t) => ({ state: t.state as JobState, at: date(t.at) })),
    leaseUntil: dateOrNull(w.lease_until),
    worker: w.worker as string | null,
    progress: progressFromWire(w.progress),
  };
}

function progressFromWire(p: unknown): Progress | null {
  if (p === null || p === undefined) return null;
  const w = p as Body;
  return { value: w.value as number | null, message: w.message as string | null, at: date(w.at) };
}

export function workerFromWire(w: Body): WorkerInfo {
  return {
    id: w.id as string,
    name: w.name as string,
    queues: w.queues as string[],
    held: int(w.held),
    active: w.active as boolean,
    credits: int(w.credits),
    connectedAt: date(w.connected_at),
    lastSeen: date(w.last_seen),
    host: w.host as string | null,
    pid: w.pid === null ? null : int(w.pid),
    concurrency: w.concurrency === null ? null : int(w.concurrency),
  };
}

export function statsFromWire(w: Body): Stats {
  return {
    totalJobs: int(w.total_jobs),
    queues: (w.queues as Body[]).map((q) => ({
      name: q.name as string,
      paused: q.paused as boolean,
      durability: q.durability as string,
      counts: Object.fromEntries(Object.entries(q.counts as Record<string, unknown>).map(([k, v]) => [k, int(v)])) as Record<
        JobState,
        number
      >,
      total: int(q.total),
    })),
    workers: int(w.workers),
    connections: int(w.connections),
  };
}

export function scheduleFromWire(w: Body): Schedule {
  const o = w.options as Body;
  return {
    name: w.name as string,
    cron: w.cron as string,
    timezone: w.timezone as string,
    queue: w.queue as string,
    job: w.job as string,
    payload: decodePayload(w.payload as Uint8Array),
    rawPayload: w.payload as Uint8Array,
    options: {
      priority: int(o.priority),
      maxAttempts: o.max_attempts === null ? null : int(o.max_attempts),
      backoff: backoffFromWire(o.backoff),
      timeoutMs: o.timeout === null ? null : ms(o.timeout),
      headers: o.headers as Record<string, string> | null,
    },
    misfire: w.misfire as Schedule["misfire"],
    paused: w.paused as boolean,
    createdAt: date(w.created_at),
    updatedAt: date(w.updated_at),
    nextRunAt: dateOrNull(w.next_run_at),
    lastRunAt: dateOrNull(w.last_run_at),
    lastJobId: w.last_job_id as string | null,
    lastJobState: w.last_job_state as JobState | null,
  };
}

/** What a job definition tells the server: the defaults of every enqueue of the job `name`. */
export interface JobDefinitionSpec {
  name: string;
  /** The queue its jobs go to (shown; every enqueue still names its own). */
  queue?: string | null;
  /** 0..10: the priority of an enqueue that gives 0. */
  priority?: number;
  maxAttempts?: number | null;
  backoff?: Backoff | number[] | null;
  /** The lease in ms. */
  timeoutMs?: number | null;
  /** The JSON Schema (Draft 2020-12) of the payload: an object, or its JSON text. */
  schema?: Record<string, unknown> | string | null;
  /** The server checks every payload of the job against `schema` at enqueue (needs `schema`). */
  validate?: boolean;
}

/** A job definition as the server holds it. */
export interface JobDefinition {
  name: string;
  queue: string | null;
  priority: number;
  maxAttempts: number | null;
  backoff: Backoff | null;
  timeoutMs: number | null;
  /** The JSON Schema of the payload (the server's canonical form: keys sorted), or null. */
  schema: Record<string, unknown> | null;
  validate: boolean;
  /** The client whose registration last changed it (its HELLO name; `http <address>` over HTTP). */
  registeredBy: string;
  createdAt: Date;
  updatedAt: Date;
}

/** The wire's JobDefinitionSpec of an SDK one. */
export function definitionToWire(d: JobDefinitionSpec): Body {
  const schema = d.schema === undefined || d.schema === null ? null : typeof d.schema === "string" ? d.schema : JSON.stringify(d.schema);
  return {
    name: d.name,
    queue: d.queue ?? null,
    priority: d.priority ?? 0,
    max_attempts: d.maxAttempts ?? null,
    backoff: backoffToWire(d.backoff),
    timeout: d.timeoutMs === undefined || d.timeoutMs === null ? null : d.timeoutMs / 1000,
    schema,
    validate: d.validate ?? false,
  };
}

export function definitionFromWire(w: Body): JobDefinition {
  return {
    name: w.name as string,
    queue: w.queue as string | null,
    priority: int(w.priority),
    maxAttempts: w.max_attempts === null ? null : int(w.max_attempts),
    backoff: backoffFromWire(w.backoff),
    timeoutMs: w.timeout === null ? null : ms(w.timeout),
    schema: w.schema === null ? null : (JSON.parse(w.schema as string) as Record<string, unknown>),
    validate: w.validate as boolean,
    registeredBy: w.registered_by as string,
    createdAt: date(w.created_at),
    updatedAt: date(w.updated_at),
  };
}
