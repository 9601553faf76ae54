/**
 * `Client`: enqueue and manage jobs, queues and schedules over one pipelined TCP connection.
 *
 * Every method may be called concurrently: requests are pipelined on one connection and matched
 * to answers by id. A dropped connection is re-dialled with backoff on the next request; a
 * request in flight when it dropped fails with `ConnectionLost` (its outcome is unknown: retry an
 * enqueue with the same idempotency key), except reads and keyed enqueues, which are resent.
 */

import { randomBytes } from "node:crypto";
import { type Body, MessageType } from "./codec.js";
import { type Answer, Connection, type ConnectionOptions, type Endpoint, hostPort, parseUrls } from "./connection.js";
import {
  BadRequest,
  Busy,
  ClientClosed,
  ConnectionLost,
  InvalidURL,
  JobCancelled,
  JobFailed,
  type NotFoundKind,
  NotConnected,
  NotLeader,
  TooLarge,
  Unauthorized,
  UnsupportedVersion,
  WaitTimeout,
} from "./errors.js";
import {
  type Backoff,
  backoffToWire,
  FINAL_STATES,
  type Job,
  jobFromWire,
  JobId,
  type JobPage,
  type JobState,
  type PurgeResult,
  type Schedule,
  scheduleFromWire,
  type ScheduleJobOptions,
  type Stats,
  statsFromWire,
  type WaitOptions,
  workerFromWire,
  type WorkerInfo,
  definitionFromWire,
  definitionToWire,
  type JobDefinition,
  type JobDefinitionSpec,
} from "./models.js";
import { encodePayload, NIL } from "./payload.js";
import { traced } from "./tracing.js";

/** Milliseconds a request may wait for its answer by default. */
export const DEFAULT_TIMEOUT_MS = 30_000;
/** Milliseconds the client keeps trying to (re)connect before a request fails with NotConnected. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
/** Reconnect backoff: first wait, growth factor, longest wait (ms). */
const BACKOFF_FIRST_MS = 50;
const BACKOFF_FACTOR = 2;
const BACKOFF_MAX_MS = 2000;
/** How often a request that is safe to resend is resent after the connection drops under it. */
const MAX_RESENDS = 3;
/** ... with several addresses (a cluster: a leader change may cut it more than once). */
const MAX_FAILOVER_RESENDS = 10;
/** Longest pause between two tries while a cluster has no leader (ms). */
const FAILOVER_BACKOFF_MAX_MS = 500;
/** How long one connection attempt to one member of a cluster may take (ms). */
const FAILOVER_CONNECT_TIMEOUT_MS = 2000;
/** Bytes of a request-dedupe token. */
const TOKEN_BYTES = 16;
/** Longest WAIT one request asks the server for (ms); `wait` asks again until its own timeout. */
const WAIT_CHUNK_MS = 300_000;
/** Job state labels, as the server names them. */
const STATES: readonly JobState[] = ["scheduled", "enqueued", "reserved", "running", "succeeded", "retrying", "dead", "cancelled"];
/** Durability modes of a queue. */
const DURABILITY_MODES = ["sync", "group", "async"] as const;
/** A queue's durability mode: fsync before each answer, fsyncs shared by concurrent writes, or answer before the fsync. */
export type Durability = (typeof DURABILITY_MODES)[number];

export interface ClientOptions {
  /** The server's auth token (default: `SPITFIRE_AUTH_TOKEN`). */
  authToken?: string | null;
  /** How long a request may wait for its answer (default 30 s). */
  timeoutMs?: number;
  /** How long to keep trying to (re)connect (default 10 s). */
  connectTimeoutMs?: number;
  /** Trace enqueues when @opentelemetry/api is installed and configured (default true; src/tracing.ts). */
  tracing?: boolean;
}

/** Options of an enqueue. Durations are milliseconds. */
export interface EnqueueOptions {
  /** 0..10, higher first (default 0). */
  priority?: number;
  /** Run no earlier than now + delayMs. Exclusive with `runAt`. */
  delayMs?: number;
  /** Run no earlier than this time (a Date or epoch milliseconds). */
  runAt?: Date | number;
  /** 1..1,000,000 (default: the server's, 25). */
  maxAttempts?: number;
  /** Retry delays: a policy, or a list of delays in ms (kind `delays`). */
  backoff?: Backoff | number[];
  /** The lease in ms (default: the server's, 60 s). */
  timeoutMs?: number;
  /** While a job with this key exists (and 24 h after), enqueueing again returns it. */
  idempotencyKey?: string;
  /** String headers delivered to the worker. */
  headers?: Record<string, string>;
}

export interface EnqueueManyOptions extends Omit<EnqueueOptions, "idempotencyKey"> {
  /** One key (or null) per payload. */
  idempotencyKeys?: (string | null)[];
}

/** A schedule's definition. */
export interface ScheduleDefinition {
  name: string;
  cron: string;
  queue: string;
  job: string;
  timezone?: string;
  payload?: unknown;
  options?: ScheduleJobOptions;
  misfire?: "skip" | "once" | "all";
}

export type { WaitOptions } from "./models.js";

/** Options of `listJobs`: every one given must match. */
export interface ListJobsOptions {
  /** Only this queue's jobs (default: every queue; an unknown queue lists nothing). */
  queue?: string | null;
  /** Only jobs in one of these states (default: every state). */
  states?: JobState | readonly JobState[] | null;
  /** Jobs per page, 1 to 1000 (default 50). */
  limit?: number;
  /** The `cursor` of the previous page (default: the first page). */
  cursor?: string | null;
  /** Newest (created) first (default), or oldest first. */
  newestFirst?: boolean;
}

/** A job id as the methods take it: the string, or the `JobId` `enqueue` returned. */
export type JobRef = string | JobId;

function jobIdOf(ref: JobRef): string {
  if (typeof ref === "string") return ref;
  if (ref instanceof String) return ref.valueOf();
  throw new BadRequest(`a job id must be a string or a JobId, not ${typeof ref}`, { field: "job_id" });
}

/** State labels, checked here so that a typo fails before anything is sent. */
function stateLabels(states: JobState | readonly JobState[] | null | undefined, required: boolean): JobState[] | null {
  if (states === null || states === undefined) {
    if (required) throw new BadRequest(`states: give at least one of ${STATES.join(", ")}`, { field: "states" });
    return null;
  }
  const labels: unknown[] = typeof states === "string" ? [states] : Array.isArray(states) ? [...(states as unknown[])] : [states];
  if (required && labels.length === 0) {
    throw new BadRequest(`states: give at least one of ${STATES.join(", ")}`, { field: "states" });
  }
  for (const s of labels) {
    if (typeof s !== "string" || !STATES.includes(s as JobState)) {
      throw new BadRequest(`states: unknown state ${JSON.stringify(s)}; one of ${STATES.join(", ")}`, { field: "states" });
    }
  }
  return labels.length === 0 ? null : (labels as JobState[]);
}

/**
 * The result of a job `wait` got back, or the error it throws for it: `JobFailed` (dead),
 * `JobCancelled`, `WaitTimeout` (not finished).
 */
function outcome(job: Job, timeoutMs: number | null): unknown {
  if (job.state === "succeeded") return job.result;
  if (job.state === "dead") {
    const last = job.errors.at(-1);
    const why = last === undefined ? "" : ` after ${last.attempt} attempt(s): ${last.error}`;
    throw new JobFailed(`job ${job.id} (${job.name}) failed${why}`, job);
  }
  if (job.state === "cancelled") throw new JobCancelled(`job ${job.id} (${job.name}) was cancelled`, job);
  throw new WaitTimeout(
    `job ${job.id} (${job.name}) is still ${job.state} after ${timeoutMs ?? 0} ms; it goes on (wait again, or give a longer timeoutMs)`,
    job,
  );
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function seconds(ms: number | undefined | null, name: string): number | null {
  if (ms === undefined || ms === null) return null;
  if (typeof ms !== "number" || !Number.isFinite(ms)) throw new BadRequest(`${name} must be a number of milliseconds`, { field: name });
  return ms / 1000;
}

function epoch(at: Date | number | undefined): number | null {
  if (at === undefined) return null;
  const t = at instanceof Date ? at.getTime() : at;
  if (!Number.isFinite(t)) throw new BadRequest("runAt must be a valid Date or epoch milliseconds", { field: "run_at" });
  return t / 1000;
}

/** The option fields shared by ENQUEUE and ENQUEUE_MANY. */
function wireOptions(o: EnqueueOptions | EnqueueManyOptions): Body {
  return {
    priority: o.priority ?? 0,
    delay: seconds(o.delayMs, "delay"),
    run_at: epoch(o.runAt),
    max_attempts: o.maxAttempts ?? null,
    backoff: backoffToWire(o.backoff),
    timeout: seconds(o.timeoutMs, "timeout"),
    headers: o.headers ?? null,
  };
}

export function scheduleOptionsToWire(o: ScheduleJobOptions | undefined): Body {
  return {
    priority: o?.priority ?? 0,
    max_attempts: o?.maxAttempts ?? null,
    backoff: backoffToWire(o?.backoff),
    timeout: seconds(o?.timeoutMs, "options.timeout"),
    headers: o?.headers ?? null,
  };
}

/** A Spitfire client. `new Client()` uses `SPITFIRE_URL` or tcp://127.0.0.1:7878. */
export class Client {
  /** The server's URL (with several addresses, all of them: `tcp://h1:p1,h2:p2`). */
  readonly url: string;
  /** Recurring schedules kept by the server. */
  readonly schedules: Schedules;
  /** Every address given; several make a cluster's client (leader following, request tokens). */
  private readonly endpoints: Endpoint[];
  private readonly multi: boolean;
  /** The address tried first: `endpoints[next]`, or a leader named outside the list. */
  private next = 0;
  private leader: Endpoint | null = null;
  private readonly authToken: string | null;
  private readonly timeoutMs: number;
  private readonly connectTimeoutMs: number;
  private conn: Connection | null = null;
  private dialing: Promise<Connection> | null = null;
  private closed = false;
  private readonly tracing: boolean;

  constructor(url?: string | readonly string[] | null, options: ClientOptions = {}) {
    this.tracing = options.tracing ?? true;
    this.endpoints = parseUrls(url);
    this.multi = this.endpoints.length > 1;
    this.url = `tcp://${this.endpoints.map(hostPort).join(",")}`;
    this.authToken = options.authToken ?? process.env.SPITFIRE_AUTH_TOKEN ?? null;
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.connectTimeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    this.schedules = new Schedules(this);
  }

  /** Connects now (otherwise the first request does). */
  async connect(): Promise<void> {
    await this.connection();
  }

  /** Closes the connection; requests still in flight fail. Idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    const conn = this.conn;
    this.conn = null;
    await conn?.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /** Round-trip time of a PING, in milliseconds. */
  async ping(): Promise<number> {
    const t = performance.now();
    await this.call(MessageType.PING, {}, null, true);
    return performance.now() - t;
  }

  /**
   * Enqueues one job and returns its id once it is durable: a `JobId` (a `String`) with `created`
   * and `wait()`. `payload` is any msgpack-able value.
   */
  async enqueue(queue: string, name: string, payload?: unknown, options: EnqueueOptions = {}): Promise<JobId> {
    return this.enqueueRaw(queue, name, payload === undefined ? NIL : encodePayload(payload), options);
  }

  /** `enqueue` (kept for compatibility: the `JobId` it returns has `id`, `created` and `state` too). */
  async enqueueDetailed(queue: string, name: string, payload?: unknown, options: EnqueueOptions = {}): Promise<JobId> {
    return this.enqueue(queue, name, payload, options);
  }

  /** `enqueue` of a payload that is already bytes, sent as they are. */
  async enqueueRaw(queue: string, name: string, data: Uint8Array, options: EnqueueOptions = {}): Promise<JobId> {
    const send = (headers: EnqueueOptions["headers"]) => this.sendEnqueue(queue, name, data, { ...options, headers });
    return traced(this.tracing, queue, options.headers, this.endpoint, null, send, (r) => r.id);
  }

  /** The address the client talks to now (the leader's, once known, in a cluster). */
  get endpoint(): Endpoint {
    return this.leader ?? (this.endpoints[this.next] as Endpoint);
  }

  /** A request-dedupe token for an enqueue: with several addresses only (those are resent). */
  private token(): Uint8Array | null {
    return this.multi ? new Uint8Array(randomBytes(TOKEN_BYTES)) : null;
  }

  private async sendEnqueue(queue: string, name: string, data: Uint8Array, options: EnqueueOptions): Promise<JobId> {
    await this.checkSizes([data]);
    const token = this.token();
    const body = {
      queue, name, payload: data, ...wireOptions(options), idempotency_key: options.idempotencyKey ?? null, request_token: token,
    };
    const a = await this.call(MessageType.ENQUEUE, body, null, options.idempotencyKey !== undefined || token !== null);
    return new JobId(a.body.job_id as string, {
      created: a.body.created as boolean,
      state: a.body.state as JobState,
      wait: (id, o) => this.wait(id, o),
    });
  }

  /** Enqueues many jobs of one handler atomically (all or none, one fsync); returns their ids in order. */
  async enqueueMany(queue: string, name: string, payloads: unknown[], options: EnqueueManyOptions = {}): Promise<string[]> {
    const data = payloads.map((p) => (p === undefined ? NIL : encodePayload(p)));
    await this.checkSizes(data);
    const keys = options.idempotencyKeys ?? null;
    if (keys !== null && keys.length !== payloads.length) {
      throw new BadRequest(`idempotencyKeys has ${keys.length} keys for ${payloads.length} payloads`, { field: "idempotency_keys" });
    }
    const send = async (headers: EnqueueOptions["headers"]) => {
      const token = this.token();
      const body = {
        queue, name, payloads: data, ...wireOptions({ ...options, headers }), idempotency_keys: keys, request_token: token,
      };
      return (await this.call(MessageType.ENQUEUE_MANY, body, null, token !== null)).body.job_ids as string[];
    };
    return traced(this.tracing, queue, options.headers, this.endpoint, payloads.length, send);
  }

  /** The job; `JobNotFound` if the server does not know it. */
  async get(jobId: JobRef): Promise<Job> {
    return this.jobCall(MessageType.GET, jobId, true);
  }

  /** Cancels a job not yet finished (a worker running it is told); returns it afterwards. */
  async cancel(jobId: JobRef): Promise<Job> {
    return this.jobCall(MessageType.CANCEL, jobId, false);
  }

  /** Enqueues a dead or cancelled job again with fresh attempts; returns it afterwards. */
  async retry(jobId: JobRef): Promise<Job> {
    return this.jobCall(MessageType.RETRY, jobId, false);
  }

  /** Deletes a job; returns it as it was. */
  async delete(jobId: JobRef): Promise<Job> {
    return this.jobCall(MessageType.DELETE, jobId, false);
  }

  /** Counts of every queue, or of one (`QueueNotFound` if unknown). */
  async stats(queue?: string): Promise<Stats> {
    const a = await this.call(MessageType.STATS, { queue: queue ?? null }, "queue", true);
    return statsFromWire(a.body.stats as Body);
  }

  /** Stops deliveries from a queue (enqueues still succeed). */
  async pause(queue: string): Promise<void> {
    await this.call(MessageType.PAUSE, { queue }, "queue", true);
  }

  /** Starts deliveries from a paused queue again. */
  async resume(queue: string): Promise<void> {
    await this.call(MessageType.RESUME, { queue }, "queue", true);
  }

  /** Deletes a queue with its jobs; one with pending jobs needs `force` (else `Conflict`). */
  async deleteQueue(queue: string, options: { force?: boolean } = {}): Promise<void> {
    await this.call(MessageType.DELETE_QUEUE, { queue, force: options.force ?? false }, "queue", false);
  }

  /**
   * Waits until the job finishes and returns its result (decoded from msgpack; null when the
   * handler returned nothing). The server pushes the outcome once it is durable (`WAIT`, no
   * polling). Throws `JobFailed` (dead) or `JobCancelled`, both `JobError`s carrying the job, or
   * `WaitTimeout` after `timeoutMs` (default: no limit), carrying the job as it was then;
   * `JobNotFound` for an unknown job or one deleted meanwhile; `Busy` when this client already
   * waits on 1,000 jobs (the server's limit per connection).
   */
  async wait(jobId: JobRef, options: WaitOptions = {}): Promise<unknown> {
    return outcome(await this.waitJob(jobId, options), options.timeoutMs ?? null);
  }

  /**
   * `wait`, returning the job's record (finished, or as it is at the timeout) instead of its
   * result, and throwing nothing for its state.
   */
  async waitJob(jobId: JobRef, options: WaitOptions = {}): Promise<Job> {
    const id = jobIdOf(jobId);
    const timeoutMs = options.timeoutMs ?? null;
    if (timeoutMs !== null && !(typeof timeoutMs === "number" && timeoutMs >= 0)) {
      throw new BadRequest(`timeoutMs must be a number of milliseconds >= 0 (or null: no limit), not ${String(timeoutMs)}`, {
        field: "timeout",
      });
    }
    const deadline = timeoutMs === null ? null : performance.now() + timeoutMs;
    for (;;) {
      // The server answers at the chunk's end at the latest: the request may take that long more.
      const chunk = deadline === null ? WAIT_CHUNK_MS : Math.max(0, Math.min(WAIT_CHUNK_MS, deadline - performance.now()));
      const a = await this.call(MessageType.WAIT, { job_id: id, timeout: chunk / 1000 }, "job", true, chunk);
      const job = jobFromWire(a.body.job as Body);
      if (FINAL_STATES.includes(job.state) || chunk === 0 || (deadline !== null && performance.now() >= deadline)) return job;
    }
  }

  // -- administration -------------------------------------------------------------------------

  /**
   * A page of jobs, newest (created) first unless `newestFirst` is false: of `queue` (default:
   * every queue), in one of `states`. Pass the page's `cursor` for the next one (null: that was
   * the last). A bad state or a `limit` outside 1..1000 is a `BadRequest` before anything is sent.
   */
  async listJobs(options: ListJobsOptions = {}): Promise<JobPage> {
    const limit = options.limit ?? 50;
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000) {
      throw new BadRequest(`limit must be an integer from 1 to 1000, not ${String(limit)}`, { field: "limit" });
    }
    const body = {
      queue: options.queue ?? null,
      states: stateLabels(options.states, false),
      limit,
      cursor: options.cursor ?? null,
      newest_first: options.newestFirst ?? true,
    };
    const a = await this.call(MessageType.LIST_JOBS, body, null, true);
    return { jobs: (a.body.jobs as Body[]).map(jobFromWire), cursor: a.body.cursor as string | null };
  }

  /**
   * Deletes every job of `queue` in one of `states` (e.g. `["succeeded", "dead"]`) that exists now,
   * durably, in chunks; workers running a deleted job are told to stop it. Not resent after a lost
   * connection: purging again finishes what a broken one left. `QueueNotFound` for an unknown queue.
   */
  async purge(queue: string, options: { states: JobState | readonly JobState[] }): Promise<PurgeResult> {
    const body = { queue, states: stateLabels(options.states, true) };
    const a = await this.call(MessageType.PURGE, body, "queue", false);
    return { matched: Number(a.body.matched), deleted: Number(a.body.deleted), failed: Number(a.body.failed) };
  }

  /**
   * Sets a queue's durability mode: `sync` (fsync before each answer), `group` (fsyncs shared by
   * concurrent writes) or `async` (answer before the fsync). Creates the queue if needed; the mode
   * survives restarts. Idempotent.
   */
  async setDurability(queue: string, mode: Durability): Promise<void> {
    if (!DURABILITY_MODES.includes(mode)) {
      throw new BadRequest(`durability must be one of ${DURABILITY_MODES.join(", ")}, not ${JSON.stringify(mode)}`, {
        field: "durability",
      });
    }
    await this.call(MessageType.SET_DURABILITY, { queue, mode }, "queue", true);
  }

  /** The workers subscribed over the binary protocol now (HTTP workers are not listed). */
  async workers(): Promise<WorkerInfo[]> {
    const a = await this.call(MessageType.LIST_WORKERS, {}, null, true);
    return (a.body.workers as Body[]).map(workerFromWire);
  }

  /** Every job definition the server holds, by name. */
  async jobDefinitions(): Promise<JobDefinition[]> {
    const a = await this.call(MessageType.LIST_JOB_DEFINITIONS, {}, null, true);
    return (a.body.definitions as Body[]).map(definitionFromWire);
  }

  /**
   * Registers job definitions: each replaces the one the server holds for its name (the others
   * stay); one identical to the server's is not written. All or nothing: a bad field is a
   * `BadRequest` naming it (`definitions[2].max_attempts`) and nothing changes. A server older
   * than job definitions answers `BadRequest` "unknown message type" (and closes the connection).
   */
  async registerJobDefinitions(definitions: readonly JobDefinitionSpec[]): Promise<void> {
    await this.call(MessageType.REGISTER_JOBS, { definitions: definitions.map(definitionToWire) }, null, true);
  }

  /**
   * @internal Sends a request, reconnecting as needed; resends safe requests after a drop.
   * `extraMs` is added to the request's timeout (WAIT: the server answers that late).
   */
  async call(type: number, body: Body, notFound: NotFoundKind, safe: boolean, extraMs = 0): Promise<Answer> {
    const maxResends = this.multi ? MAX_FAILOVER_RESENDS : MAX_RESENDS;
    let failover = 0; // with several addresses: until when a leader is looked for
    let hops = 0;
    let pause = BACKOFF_FIRST_MS;
    for (let attempt = 0; ; ) {
      const conn = await this.connection();
      try {
        return await conn.request(type, body, this.timeoutMs + extraMs, notFound);
      } catch (err) {
        if (err instanceof ConnectionLost && safe && attempt < maxResends && !this.closed) {
          attempt++;
          continue;
        }
        if (err instanceof NotLeader && this.multi && !this.closed) {
          // Nothing was done: any request may go to the leader.
          const now = performance.now();
          if (failover === 0) failover = now + this.connectTimeoutMs;
          if (now < failover) {
            hops++;
            pause = await this.followLeader(conn, err.leader, hops, pause);
            continue;
          }
        }
        throw err;
      }
    }
  }

  /**
   * @internal A member that does not lead answered on `conn`: send nothing more there (it closes
   * once idle) and aim at the leader it named, at once the first time; while no leader is known,
   * or after a hop that led nowhere, pause first. Returns the next pause.
   */
  async followLeader(conn: Connection | null, leader: string | null, hops: number, pause: number): Promise<number> {
    if (conn === null || !conn.draining) this.aimAt(leader);
    if (conn !== null) {
      conn.draining = true;
      if (conn.inFlight === 0) void conn.close();
    }
    if (leader === null || hops > 1) {
      await sleep(pause * (0.8 + Math.random() * 0.4));
      return Math.min(FAILOVER_BACKOFF_MAX_MS, pause * BACKOFF_FACTOR);
    }
    return pause;
  }

  /** Try `leader` (`host:port`) first from now on, or the next address when none is known. */
  private aimAt(leader: string | null): void {
    let named: Endpoint | null = null;
    if (leader !== null) {
      try {
        named = parseUrls(`tcp://${leader}`)[0] ?? null;
      } catch {
        named = null; // unparseable: as if none were known
      }
    }
    if (named === null) {
      this.leader = null;
      this.next = (this.next + 1) % this.endpoints.length;
      return;
    }
    if (named.host === "0.0.0.0" || named.host === "::") named = { host: this.endpoint.host, port: named.port };
    this.connected(named);
  }

  private connected(endpoint: Endpoint): void {
    const i = this.endpoints.findIndex((e) => e.host === endpoint.host && e.port === endpoint.port);
    if (i >= 0) {
      this.next = i;
      this.leader = null;
    } else {
      this.leader = endpoint;
    }
  }

  /** The addresses in the order to try them now: the current one, then the others in turn. */
  private order(): Endpoint[] {
    const n = this.endpoints.length;
    const rest = Array.from({ length: n }, (_, i) => this.endpoints[(this.next + i) % n] as Endpoint);
    return this.leader === null ? rest : [this.leader, ...rest];
  }

  /**
   * @internal One connection attempt to each address in turn, the current one first (each at most
   * 2 s with several addresses); the first that answers is the current one from then on.
   */
  async openAny(connectTimeoutMs: number, extra: Partial<ConnectionOptions> = {}): Promise<Connection> {
    let last: unknown = null;
    const timeout = this.multi ? Math.min(connectTimeoutMs, FAILOVER_CONNECT_TIMEOUT_MS) : connectTimeoutMs;
    for (const endpoint of this.order()) {
      try {
        const conn = await Connection.open({ ...extra, endpoint, authToken: this.authToken, connectTimeoutMs: timeout });
        this.connected(endpoint);
        return conn;
      } catch (err) {
        if (!this.multi || err instanceof Unauthorized || err instanceof UnsupportedVersion) throw err;
        last = err;
      }
    }
    throw last instanceof Error ? last : new NotConnected(`cannot connect to any of ${this.url}`);
  }

  /** @internal Several addresses were given (a cluster's client). */
  get isCluster(): boolean {
    return this.multi;
  }

  private async jobCall(type: number, jobId: JobRef, safe: boolean): Promise<Job> {
    const a = await this.call(type, { job_id: jobIdOf(jobId) }, "job", safe);
    return jobFromWire(a.body.job as Body);
  }

  private async checkSizes(payloads: Uint8Array[]): Promise<void> {
    const limit = (await this.connection()).welcome.max_payload;
    payloads.forEach((p, i) => {
      if (p.length > limit) {
        throw new TooLarge(`payload ${i} is ${p.length} bytes, over the server's max_payload of ${limit}`, { field: "payload" });
      }
    });
  }

  private async connection(): Promise<Connection> {
    if (this.closed) throw new ClientClosed("the client is closed");
    const c = this.conn;
    if (c !== null && !c.closed && !c.draining) return c;
    this.dialing ??= this.dial().finally(() => {
      this.dialing = null;
    });
    return this.dialing;
  }

  private async dial(): Promise<Connection> {
    const deadline = performance.now() + this.connectTimeoutMs;
    let pause = BACKOFF_FIRST_MS;
    for (;;) {
      const left = deadline - performance.now();
      try {
        const conn = await this.openAny(Math.max(1, left));
        if (this.closed) {
          await conn.close();
          throw new ClientClosed("the client is closed");
        }
        this.conn = conn;
        return conn;
      } catch (err) {
        if (err instanceof Unauthorized || err instanceof UnsupportedVersion || err instanceof InvalidURL || err instanceof ClientClosed) {
          throw err;
        }
        if (err instanceof Busy && err.retryAfterMs !== null) pause = Math.max(pause, err.retryAfterMs);
        if (performance.now() + pause >= deadline || this.closed) {
          const why = err instanceof Error ? err.message : String(err);
          throw new NotConnected(`cannot connect to ${this.url} within ${this.connectTimeoutMs} ms: ${why}`, { cause: err });
        }
        await sleep(pause);
        pause = Math.min(pause * BACKOFF_FACTOR, this.multi ? FAILOVER_BACKOFF_MAX_MS : BACKOFF_MAX_MS);
      }
    }
  }
}

/** `client.schedules`: recurring schedules (PUT/GET/LIST/DELETE/PAUSE/RESUME/TRIGGER_SCHEDULE). */
export class Schedules {
  constructor(private readonly client: Client) {}

  /** Creates a schedule; an identical existing one is returned as is, a different one is `Conflict`. */
  async add(def: ScheduleDefinition): Promise<Schedule> {
    return (await this.put(def, { replace: false })).schedule;
  }

  /** Creates or (with `replace`, the default) replaces a schedule. */
  async put(def: ScheduleDefinition, options: { replace?: boolean } = {}): Promise<{ schedule: Schedule; created: boolean }> {
    const body = {
      name: def.name,
      cron: def.cron,
      queue: def.queue,
      job: def.job,
      timezone: def.timezone ?? "UTC",
      payload: def.payload === undefined ? null : encodePayload(def.payload),
      options: scheduleOptionsToWire(def.options),
      misfire: def.misfire ?? "skip",
      replace: options.replace ?? true,
    };
    const a = await this.client.call(MessageType.PUT_SCHEDULE, body, "schedule", true);
    return { schedule: scheduleFromWire(a.body.schedule as Body), created: a.body.created as boolean };
  }

  async get(name: string): Promise<Schedule> {
    return this.one(MessageType.GET_SCHEDULE, name, true);
  }

  /** Every schedule, by name. */
  async list(): Promise<Schedule[]> {
    const a = await this.client.call(MessageType.LIST_SCHEDULES, {}, "schedule", true);
    return (a.body.schedules as Body[]).map(scheduleFromWire);
  }

  /** Removes a schedule (jobs it enqueued stay); returns it as it was. */
  async delete(name: string): Promise<Schedule> {
    return this.one(MessageType.DELETE_SCHEDULE, name, false);
  }

  async pause(name: string): Promise<Schedule> {
    return this.one(MessageType.PAUSE_SCHEDULE, name, true);
  }

  async resume(name: string): Promise<Schedule> {
    return this.one(MessageType.RESUME_SCHEDULE, name, true);
  }

  /** Enqueues the schedule's job now, outside its series; returns the job's id. */
  async trigger(name: string): Promise<string> {
    const a = await this.client.call(MessageType.TRIGGER_SCHEDULE, { name }, "schedule", false);
    return a.body.job_id as string;
  }

  private async one(type: number, name: string, safe: boolean): Promise<Schedule> {
    const a = await this.client.call(type, { name }, "schedule", safe);
    return scheduleFromWire(a.body.schedule as Body);
  }
}
