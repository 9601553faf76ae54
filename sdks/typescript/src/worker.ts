/**
 * `Worker`: runs an App's handlers on jobs the server pushes.
 *
 * It subscribes with `concurrency + prefetch` credits, runs at most `concurrency` handlers at
 * once, highest priority first among the jobs it holds, and grants one credit back per job that
 * leaves its hands. START, CREDIT, ACK and FAIL frames produced in one event-loop turn go out in
 * one write (many outcomes per ACK/FAIL). While it holds jobs it sends worker-level heartbeats
 * every `min(WELCOME.heartbeat_interval, smallest lease / 3)`.
 *
 * Delivery is at least once: a job may run more than once (a crash, an expired lease, a dropped
 * connection), so handlers must be idempotent.
 *
 * With OpenTelemetry set up (src/tracing.ts) each job runs in a CONSUMER span "process <queue>"
 * that continues the trace of the job's headers; `new App(url, { tracing: false })` turns it off.
 *
 * Graceful shutdown (`close()`, SIGTERM, SIGINT): stop taking (UNSUBSCRIBE), hand the buffered
 * jobs back (RELEASE), let running ones finish within `graceMs`, then abort their `ctx.signal` and
 * RELEASE them. A second signal ends the grace period at once.
 *
 * A lost connection: the worker reconnects and subscribes with `resume` = its last worker id. When
 * the server gives that id back (a cluster's new leader holds the leases the old one replicated),
 * the handlers still running from the lost connection go on and report on the new one, outcomes the
 * drop cut are sent again, and the buffered jobs are handed back (RELEASE). When it gives another
 * id, the handlers from the lost connection are aborted and their outcomes dropped (the server took
 * those jobs back).
 */

import * as os from "node:os";

import type { App, JobContext } from "./app.js";
import { validate } from "./app.js";
import { type Body, MessageType } from "./codec.js";
import type { Answer, Connection } from "./connection.js";
import { Client, DEFAULT_CONNECT_TIMEOUT_MS } from "./client.js";
import { BadRequest, Conflict, NotLeader, SpitfireError, Unauthorized, UnsupportedVersion } from "./errors.js";
import { Permanent, RetryAfter } from "./outcomes.js";
import { encodePayload, strictDecodePayload } from "./payload.js";
import { type ProcessSpan, type RunOutcome, startProcess, TRACING_AVAILABLE } from "./tracing.js";

/** Jobs a worker holds (running plus buffered) by default, at least (as the Python SDK). */
const DEFAULT_IN_HAND = 100;
/** Default grace period of a shutdown (ms). */
export const DEFAULT_GRACE_MS = 25_000;
/** How long shutdown requests (UNSUBSCRIBE, RELEASE, outstanding outcomes) may take (ms). */
const SHUTDOWN_REQUEST_MS = 5_000;
/** A job's progress reports go out at most this often (ms): 4 a second, the latest winning. */
export const PROGRESS_INTERVAL_MS = 250;
/** Longest progress message, in characters (code points), as the server counts them. */
const PROGRESS_MESSAGE_MAX = 1000;
/** Reconnect backoff after a dropped connection (ms). */
const RECONNECT_FIRST_MS = 50;
const RECONNECT_MAX_MS = 2_000;
/** Outcomes a lost connection cut, kept for a resume: at most this many (the oldest dropped). */
const MAX_CUT = 10_000;

export interface WorkerOptions {
  /** Queues to take jobs from (default: every queue the app's jobs go to). */
  queues?: string[];
  /** Handlers running at once (default 10). */
  concurrency?: number;
  /** Jobs held delivered beyond `concurrency` (default: enough to hold 100, at least `concurrency`). */
  prefetch?: number;
  /** How long a graceful shutdown lets running jobs finish (default 25 s). */
  graceMs?: number;
  /** Stop gracefully on SIGTERM and SIGINT (default true). */
  handleSignals?: boolean;
  /** A name for the dashboard (default host:pid). */
  name?: string;
  /** Called with errors the worker recovers from (default: console.error). */
  onError?: (error: unknown) => void;
}

/** Counters of what the worker did. */
export interface WorkerCounts {
  succeeded: number;
  failed: number;
  retried: number;
  cancelled: number;
  released: number;
}

interface Delivery {
  job_id: string;
  queue: string;
  name: string;
  payload: Uint8Array;
  attempt: number;
  max_attempts: number;
  timeout: number;
  headers: Record<string, string> | null;
  created_at: number;
  priority: number;
}

interface Run {
  d: Delivery;
  controller: AbortController;
  /** Cancelled by the server (CANCEL_JOBS) or handed back by a shutdown: no outcome is sent. */
  dropped: boolean;
  /** The connection it was delivered on (its credit goes back only on that one). */
  conn: Connection | null;
  done: Promise<void>;
  /** What the handler threw, if it did (recorded on the run's span). */
  error?: unknown;
  /**
   * Kept across a lost connection (the worker resumed its id, or the job was delivered again
   * meanwhile): a delivery of the same job is answered by this run, not a second one.
   */
  resumed: boolean;
  /** Credits of deliveries of this job that this run answers (they come back as it ends). */
  owed: number;
}

type Outcome = { ack: Body } | { fail: Body } | null;
/** An outcome a lost connection cut (`counted`: already in `counts`). */
interface CutOutcome {
  outcome: { ack: Body } | { fail: Body };
  counted: boolean;
}

/** `ctx.progress`'s arguments, checked: a value from 0 to 1 (or null), a message of at most 1,000 characters. */
export function checkProgress(value: unknown, message: unknown): [number | null, string | null] {
  let v: number | null = null;
  let m: string | null = null;
  if (value !== undefined && value !== null) {
    if (typeof value !== "number") throw new TypeError(`progress value must be a number from 0.0 to 1.0, not ${typeof value}`);
    if (!(value >= 0 && value <= 1)) throw new RangeError(`progress value must be from 0.0 to 1.0, not ${value}`);
    v = value;
  }
  if (message !== undefined && message !== null) {
    if (typeof message !== "string") throw new TypeError(`progress message must be a string, not ${typeof message}`);
    // .length counts UTF-16 units, never fewer than code points: count those only when it may matter.
    // eslint-disable-next-line @typescript-eslint/no-misused-spread -- code points are what the server counts
    const n = message.length > PROGRESS_MESSAGE_MAX ? [...message].length : message.length;
    if (n > PROGRESS_MESSAGE_MAX) throw new RangeError(`progress message is ${n} characters; the limit is ${PROGRESS_MESSAGE_MAX}`);
    m = message;
  }
  return [v, m];
}

/** The `messaging.spitfire.outcome` of a run that ended with `outcome` (as the Python worker says it). */
function outcomeOf(outcome: Outcome, d: Delivery, closing: boolean): RunOutcome {
  if (outcome === null) return closing ? "released" : "cancelled";
  if ("ack" in outcome) return "succeeded";
  const fail = outcome.fail;
  if (fail.retry_at !== null) return "snoozed";
  return fail.retryable === true && d.attempt < d.max_attempts ? "retry" : "dead";
}

function errorText(err: unknown): string {
  if (err instanceof Error) return err.message ? `${err.name}: ${err.message}` : err.name;
  return `Error: ${String(err)}`;
}

export class Worker {
  readonly queues: string[];
  readonly concurrency: number;
  readonly prefetch: number;
  readonly graceMs: number;
  readonly counts: WorkerCounts = { succeeded: 0, failed: 0, retried: 0, cancelled: 0, released: 0 };
  /** The id the server gave this worker (set once subscribed). */
  workerId: string | null = null;

  private readonly app: App;
  private readonly options: WorkerOptions;
  private conn: Connection | null = null;
  /** Knows the app's addresses and which one leads (a Client used for that only: it never connects). */
  private router: Client | null = null;
  private readonly buffered: Delivery[] = [];
  private readonly running = new Map<string, Run>();
  /**
   * Runs whose job was delivered again while they ran (the lease expired: no heartbeat in time),
   * aborted: they still hold a slot until their handler returns, then give its credit back.
   */
  private readonly superseded = new Set<Run>();
  /** Runs held when the current connection subscribed: its credits left room for them. */
  private deducted = new Set<Run>();
  private readonly outstanding = new Set<Promise<unknown>>();
  private starts: string[] = [];
  private acks: Body[] = [];
  private fails: Body[] = [];
  private credits = 0;
  /** Outcomes the lost connection cut (not sent, sent and not answered, or ended after the drop). */
  private cut: CutOutcome[] = [];
  /** Jobs buffered (never started) when the connection dropped: handed back if the id resumes. */
  private unstarted: string[] = [];
  private flushScheduled = false;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private heartbeatSeconds = Infinity;
  private closing: Promise<void> | null = null;
  private forced = false;
  private stopped!: () => void;
  private readonly stoppedPromise: Promise<void>;
  private wakeGrace: (() => void) | null = null;
  /** The latest progress report of each job, not sent yet (coalesced). */
  private readonly progressPending = new Map<string, [number | null, string | null]>();
  /** When each running job's last report went out (performance.now()). */
  private readonly progressSent = new Map<string, number>();
  private progressScheduled = false;
  private progressTimer: NodeJS.Timeout | undefined;
  private signalHandler: (() => void) | null = null;
  private jobsRegistered = false;
  /** Make a process span per job (when OpenTelemetry is set up): the App's `tracing` option. */
  private readonly tracing: boolean;
  /** `messaging.client.id` of its spans: the name it subscribes with. */
  private readonly clientId: string;

  constructor(app: App, options: WorkerOptions = {}) {
    this.app = app;
    this.options = options;
    this.queues = options.queues ?? app.queues;
    if (this.queues.length === 0) throw new BadRequest("the worker has no queues: declare jobs or give queues");
    this.concurrency = options.concurrency ?? 10;
    if (!Number.isInteger(this.concurrency) || this.concurrency < 1) throw new BadRequest("concurrency must be an integer >= 1");
    this.prefetch = options.prefetch ?? Math.max(this.concurrency, DEFAULT_IN_HAND - this.concurrency);
    if (!Number.isInteger(this.prefetch) || this.prefetch < 0) throw new BadRequest("prefetch must be an integer >= 0");
    this.graceMs = options.graceMs ?? DEFAULT_GRACE_MS;
    this.tracing = TRACING_AVAILABLE && (app.options.tracing ?? true);
    this.clientId = options.name ?? `${os.hostname()}:${process.pid}`;
    this.stoppedPromise = new Promise((resolve) => {
      this.stopped = resolve;
    });
  }

  /** Runs until `close()` (or SIGTERM/SIGINT); reconnects with backoff if the connection drops. */
  async run(): Promise<void> {
    if (this.options.handleSignals ?? true) this.installSignals();
    try {
      await this.connect();
    } catch (err) {
      if (!(err instanceof NotLeader && this.router?.isCluster === true)) {
        this.removeSignals();
        throw err;
      }
      void this.reconnect(); // a cluster electing its leader: keep looking for it
    }
    await this.stoppedPromise;
  }

  /**
   * Graceful shutdown: stop taking, RELEASE buffered jobs, wait up to `graceMs` (default the
   * worker's) for running ones, abort and RELEASE the rest. A second call ends the grace at once.
   */
  close(graceMs?: number): Promise<void> {
    if (this.closing !== null) {
      this.forced = true;
      this.wakeGrace?.();
      return this.closing;
    }
    this.closing = this.shutdown(graceMs ?? this.graceMs).finally(() => {
      this.removeSignals();
      this.stopped();
    });
    return this.closing;
  }

  // -- connection -------------------------------------------------------------------------------

  /**
   * Registers the app's job definitions once per worker start, before subscribing, on a client of
   * its own (a server older than them closes the connection it gets the request on). Not being
   * able to is reported, never fatal: the jobs still run; enqueues made elsewhere then get the
   * server's defaults. A connection failure propagates (connect retries).
   */
  private async registerJobs(): Promise<void> {
    const client = new Client(this.app.url, this.app.options);
    try {
      const known = await this.app.registerJobs(client);
      if (!known) {
        console.warn(
          `spitfire: the server at ${this.app.url ?? "the default address"} does not keep job definitions (an older version): ` +
            "enqueues of this app's jobs from elsewhere get the server's defaults",
        );
      }
    } catch (err) {
      if (!(err instanceof BadRequest || err instanceof Conflict)) throw err;
      this.report(new SpitfireError(`the server refused the app's job definitions: ${err.message}; enqueues of its jobs from elsewhere get the server's defaults`, { code: err.code, field: err.field, cause: err }));
    } finally {
      await client.close();
    }
    this.jobsRegistered = true;
  }

  private async connect(): Promise<void> {
    if (!this.jobsRegistered) await this.registerJobs();
    // Assigned once open resolves; onClose is only called for an open connection, but a closure
    // must not read a const before its initialisation (a ReferenceError from a socket event).
    let opened: Connection | null = null;
    // Where the server was last found (a cluster's leader, once known); it opens no connection itself.
    const router = (this.router ??= new Client(this.app.url, this.app.options));
    const conn = await router.openAny(this.app.options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS, {
      keepAlive: true,
      onPush: (type, body) => {
        this.onPush(type, body);
      },
      onClose: (error) => {
        if (opened !== null) this.onConnectionClosed(opened, error);
      },
    });
    opened = conn;
    if (this.closing !== null) {
      // close() ran while this connection was being opened: the shutdown did not see it, and a
      // subscribed connection left open would take jobs and keep the process alive.
      await conn.close();
      return;
    }
    this.conn = conn;
    // Jobs still running from a lost connection take room: their credit comes back here, on this
    // connection, when they end (giveBack), or the window would shrink by them for good. So only
    // free slots are granted (resumed leases count against none of the new credits).
    this.deducted = new Set([...this.running.values(), ...this.superseded]);
    this.credits = 0; // credits of runs that ended while disconnected are in the count below
    const credits = Math.max(0, this.concurrency + this.prefetch - this.deducted.size);
    // The id of the connection lost: the server gives it back if no live connection holds it.
    const previous = this.workerId;
    let a: Answer;
    try {
      a = await conn.request(
        MessageType.SUBSCRIBE,
        {
          queues: this.queues,
          credits,
          name: this.options.name ?? `${os.hostname()}:${process.pid}`,
          host: os.hostname(),
          pid: process.pid,
          concurrency: this.concurrency,
          resume: previous,
        },
        30_000,
      );
    } catch (err) {
      // Refused (a bad queue name, ...): not a dropped connection to recover from.
      this.conn = null;
      conn.destroy();
      // A cluster member that does not lead: the next try goes to the leader it named.
      if (err instanceof NotLeader && router.isCluster) await router.followLeader(null, err.leader, 1, 0);
      throw err;
    }
    this.workerId = a.body.worker_id as string;
    if (previous !== null) {
      if (this.workerId === previous) this.resumed(conn);
      else this.notResumed(conn);
    }
    this.scheduleHeartbeat();
  }

  /**
   * SUBSCRIBED gave back the lost connection's id: the jobs still leased to it are this
   * connection's. Runs from the lost connection are kept (their outcomes go here; START says they
   * run, for a cluster's new leader that only knew them reserved), outcomes the drop cut are sent
   * again (an item whose lease is gone is answered CONFLICT and dropped), and the buffered jobs are
   * handed back with RELEASE (no attempt counted) rather than run: a delivery whose lease record
   * had not reached the new leader is ready there again and may go to another worker, and a job
   * that never started costs only a redelivery, which RELEASE makes at once.
   */
  private resumed(conn: Connection): void {
    const kept = [...this.running.values()].filter((r) => r.conn !== conn && !r.dropped);
    for (const run of kept) {
      run.conn = conn;
      run.resumed = true;
      run.owed = 0; // the lost connection's credits are moot: this one granted free slots only
    }
    for (const { outcome, counted } of this.cut.splice(0)) this.queueOutcome(outcome, !counted);
    const unstarted = this.unstarted.splice(0);
    if (kept.length > 0) {
      this.starts.push(...kept.map((r) => r.d.job_id));
      // Extend the leases now: the new leader counts them from the old one's last heartbeat.
      this.track(conn.request(MessageType.HEARTBEAT, { job_ids: null, seconds: null }, 30_000).catch(() => undefined));
    }
    if (unstarted.length > 0) this.outcome(conn, MessageType.RELEASE, unstarted.map((job_id) => ({ job_id })), { job_ids: unstarted });
    this.scheduleFlush();
  }

  /**
   * SUBSCRIBED gave a new id (a live connection holds the old one, or the server does not resume):
   * the lost connection's jobs are not this one's. As without resume: its handlers' signals are
   * aborted and their outcomes dropped, its buffered jobs and cut outcomes forgotten.
   */
  private notResumed(conn: Connection): void {
    this.cut = [];
    this.unstarted = [];
    for (const run of this.running.values()) {
      if (run.conn !== conn) this.orphan(run);
    }
  }

  /** A run whose lease went with its connection: aborted, no outcome. */
  private orphan(run: Run): void {
    if (run.dropped) return;
    run.dropped = true;
    run.controller.abort(new SpitfireError("the connection to the server was lost", { code: "CONNECTION_LOST" }));
  }

  /** Keeps outcomes a lost connection cut, for a resume (at most `MAX_CUT`, the oldest dropped). */
  private keepCut(outcomes: CutOutcome[]): void {
    this.cut.push(...outcomes);
    if (this.cut.length > MAX_CUT) this.cut.splice(0, this.cut.length - MAX_CUT);
  }

  private queueOutcome(outcome: { ack: Body } | { fail: Body }, count: boolean): void {
    if ("ack" in outcome) {
      if (count) this.counts.succeeded++;
      this.acks.push(outcome.ack);
    } else {
      if (count) {
        if (outcome.fail.retry_at !== null) this.counts.retried++;
        else this.counts.failed++;
      }
      this.fails.push(outcome.fail);
    }
  }

  private onConnectionClosed(conn: Connection, error: SpitfireError | null): void {
    if (this.conn !== conn) return;
    this.conn = null;
    clearTimeout(this.heartbeatTimer);
    // Until the next SUBSCRIBED says whether this worker resumed its id, running handlers go on and
    // what this connection had not sent is kept: buffered jobs (handed back on a resume: they
    // never start on their own) and outcomes (sent again on a resume).
    this.unstarted.push(...this.buffered.splice(0).map((d) => d.job_id));
    if (this.unstarted.length > MAX_CUT) this.unstarted.splice(0, this.unstarted.length - MAX_CUT);
    this.keepCut([...this.acks.map((ack) => ({ outcome: { ack }, counted: true })), ...this.fails.map((fail) => ({ outcome: { fail }, counted: true }))]);
    this.starts = [];
    this.acks = [];
    this.fails = [];
    this.credits = 0;
    if (this.closing !== null) {
      // No resume follows a shutdown: the server hands the jobs back, ours report nothing.
      for (const run of this.running.values()) this.orphan(run);
      return;
    }
    if (error !== null) this.report(error);
    void this.reconnect();
  }

  private async reconnect(): Promise<void> {
    let pause = RECONNECT_FIRST_MS;
    // Bounded by the process's life: a worker keeps trying until closed.
    while (this.closing === null) {
      await new Promise((r) => setTimeout(r, pause));
      if (this.closing !== null) return;
      try {
        await this.connect();
        return;
      } catch (err) {
        if (err instanceof Unauthorized || err instanceof UnsupportedVersion) {
          this.report(err);
          void this.close(0);
          return;
        }
        // A cluster elects a new leader within a second: look for it often.
        pause = Math.min(pause * 2, this.router?.isCluster === true ? 500 : RECONNECT_MAX_MS);
      }
    }
  }

  private onPush(type: number, body: Body): void {
    if (type === MessageType.DELIVER) {
      for (const d of body.jobs as Delivery[]) this.hold(d);
      this.pump();
    } else if (type === MessageType.CANCEL_JOBS) {
      this.cancelJobs(body.job_ids as string[]);
    } else if (type === MessageType.GOAWAY) {
      // The server is going away: it closes the connection after answering what was sent,
      // and onConnectionClosed reconnects.
    }
  }

  // -- holding and running jobs -----------------------------------------------------------------

  private hold(d: Delivery): void {
    // The same job delivered again while held: its lease expired (no heartbeat in time, a loaded
    // machine) and the server gave it out anew. The older copy's outcome would be refused: drop a
    // buffered one (its credit back), abort a running one (a slot until it returns).
    const dup = this.buffered.findIndex((b) => b.job_id === d.job_id);
    if (dup >= 0) {
      this.buffered.splice(dup, 1);
      if (this.closing === null) this.credits++;
      this.scheduleFlush();
    }
    const old = this.running.get(d.job_id);
    if (old !== undefined && !old.dropped && (old.resumed || old.conn !== this.conn)) {
      // Delivered again while its run from a lost connection still goes on (the server took the
      // job back, then gave it to this worker): that run answers this delivery, on this connection.
      old.conn = this.conn;
      old.resumed = true;
      old.owed++;
      this.starts.push(d.job_id);
      this.scheduleFlush();
      return;
    }
    if (old !== undefined) {
      this.running.delete(d.job_id);
      old.dropped = true;
      this.superseded.add(old);
      old.controller.abort(new SpitfireError(`job ${d.job_id} was delivered again (its lease expired): this run no longer counts`, { code: "LEASE_EXPIRED" }));
    }
    // Highest priority first, FIFO within one: insert after the last job of >= priority.
    let i = this.buffered.length;
    while (i > 0 && (this.buffered[i - 1] as Delivery).priority < d.priority) i--;
    this.buffered.splice(i, 0, d);
    if (d.timeout / 3 < this.heartbeatSeconds) this.scheduleHeartbeat();
  }

  private pump(): void {
    while (this.closing === null && this.running.size + this.superseded.size < this.concurrency && this.buffered.length > 0) {
      this.start(this.buffered.shift() as Delivery);
    }
  }

  private start(d: Delivery): void {
    const controller = new AbortController();
    const run: Run = { d, controller, dropped: false, conn: this.conn, done: Promise.resolve(), resumed: false, owed: 0 };
    this.running.set(d.job_id, run);
    this.starts.push(d.job_id);
    this.scheduleFlush();
    // A buffered job gets its span when it starts, not when it arrives (as in Python).
    const span: ProcessSpan | null = this.tracing ? startProcess(d, this.clientId) : null;
    const executed = span === null ? this.execute(run) : span.within(() => this.execute(run));
    run.done = executed.then(
      (outcome) => {
        span?.end(outcomeOf(outcome, d, this.closing !== null), run.error, outcome !== null && "fail" in outcome ? (outcome.fail.error as string) : null);
        this.complete(run, outcome);
      },
      (err: unknown) => {
        span?.end(this.closing !== null ? "released" : "cancelled", err, null);
        this.report(err);
        this.complete(run, null);
      },
    );
  }

  private async execute(run: Run): Promise<Outcome> {
    const { d } = run;
    const job = this.app.handler(d.name);
    if (job === undefined) {
      // Dead at once, as in Python: every retry would fail the same way (fix the deployment, then retry it).
      const known = this.app.jobNames.sort().join(", ") || "none";
      return this.failItem(d, `LookupError: this worker has no job named ${JSON.stringify(d.name)} (it has: ${known}); run a worker whose App declares it`, null, false);
    }
    let payload: unknown;
    try {
      payload = validate(job.options.schema, d.payload.length === 0 ? undefined : strictDecodePayload(d.payload), d.name);
    } catch (err) {
      // Retrying cannot fix a payload that does not fit the handler: dead at once.
      return this.failItem(d, `JobArgumentError: the payload does not fit ${d.name}: ${err instanceof Error ? err.message : String(err)}`, null, false);
    }
    const ctx: JobContext = {
      id: d.job_id,
      queue: d.queue,
      name: d.name,
      attempt: d.attempt,
      maxAttempts: d.max_attempts,
      priority: d.priority,
      headers: d.headers ?? {},
      createdAt: new Date(d.created_at * 1000),
      timeoutMs: d.timeout * 1000,
      signal: run.controller.signal,
      progress: (value?: number | null, message?: string | null) => {
        const [v, m] = checkProgress(value, message);
        this.reportProgress(run, v, m);
      },
    };
    let result: unknown;
    try {
      result = await job.handler(payload, ctx);
    } catch (err) {
      if (!(err instanceof RetryAfter)) run.error = err;
      if (run.dropped) return null;
      return this.failure(d, err);
    }
    if (run.dropped) return null;
    if (result === undefined || result === null) return { ack: { job_id: d.job_id, result: null } };
    try {
      return { ack: { job_id: d.job_id, result: encodePayload(result) } };
    } catch (err) {
      return this.failItem(d, `TypeError: the job ran, but its return value cannot be encoded as msgpack (${String(err)})`, null, false);
    }
  }

  private failItem(d: Delivery, error: string, traceback: string | null, retryable: boolean, retryAt: number | null = null): Outcome {
    return { fail: { job_id: d.job_id, error, traceback, retryable, retry_at: retryAt } };
  }

  private failure(d: Delivery, err: unknown): Outcome {
    const stack = err instanceof Error && err.stack !== undefined ? err.stack : null;
    if (err instanceof RetryAfter) return this.failItem(d, errorText(err), null, true, (Date.now() + err.delayMs) / 1000);
    return this.failItem(d, errorText(err), stack, !(err instanceof Permanent));
  }

  private complete(run: Run, outcome: Outcome): void {
    const id = run.d.job_id;
    if (this.superseded.delete(run)) {
      this.giveBack(run);
      this.pump();
      return;
    }
    if (this.running.get(id) !== run) return; // handed back by a shutdown
    this.running.delete(id);
    this.progressPending.delete(id);
    this.progressSent.delete(id);
    if (outcome === null) {
      if (!run.dropped) this.report(new SpitfireError(`job ${id} ended without an outcome`));
    } else if (run.conn !== this.conn || this.conn === null) {
      // Its connection dropped and no SUBSCRIBED has said yet whether the worker resumed: kept.
      this.keepCut([{ outcome, counted: false }]);
    } else {
      this.queueOutcome(outcome, true);
    }
    this.giveBack(run);
    this.scheduleFlush();
    this.pump();
    if (this.running.size === 0) this.wakeGrace?.();
  }

  /** A run left: its credit goes back on the connection that counted it (none while closing). */
  private giveBack(run: Run): void {
    const counted = this.deducted.delete(run) || run.conn === this.conn;
    if (this.closing !== null || !counted) return;
    // Its own credit, and those of deliveries it answered on this connection (`hold`).
    this.credits += 1 + (run.conn === this.conn ? run.owed : 0);
    this.scheduleFlush();
  }

  private cancelJobs(ids: string[]): void {
    for (const id of ids) {
      const i = this.buffered.findIndex((d) => d.job_id === id);
      if (i >= 0) {
        // Never started: it must not run; its credit goes back at once.
        this.buffered.splice(i, 1);
        this.counts.cancelled++;
        if (this.closing === null) this.credits++;
        this.scheduleFlush();
        continue;
      }
      const run = this.running.get(id);
      if (run === undefined) continue;
      this.counts.cancelled++;
      run.dropped = true;
      run.controller.abort(new SpitfireError(`job ${id} was cancelled`, { code: "CANCELLED" }));
    }
  }

  // -- progress ---------------------------------------------------------------------------------

  /** `ctx.progress`: keep the latest report of the job, send it soon. */
  private reportProgress(run: Run, value: number | null, message: string | null): void {
    if (run.dropped || this.running.get(run.d.job_id) !== run) return; // finished, cancelled or handed back
    this.progressPending.set(run.d.job_id, [value, message]);
    if (!this.progressScheduled) {
      this.progressScheduled = true;
      setImmediate(() => {
        this.sendProgress();
      });
    }
  }

  /** Sends the reports of jobs whose interval is up; comes back for the others (coalesced). */
  private sendProgress(): void {
    this.progressScheduled = false;
    const conn = this.conn;
    const now = performance.now();
    let due: number | null = null;
    for (const [id, [value, message]] of this.progressPending) {
      const last = this.progressSent.get(id);
      if (last !== undefined && now - last < PROGRESS_INTERVAL_MS) {
        const at = last + PROGRESS_INTERVAL_MS;
        due = due === null ? at : Math.min(due, at);
        continue;
      }
      this.progressPending.delete(id);
      const run = this.running.get(id);
      if (run !== undefined && !run.dropped && run.conn === conn && conn !== null && !conn.closed) {
        conn.send(MessageType.PROGRESS, { job_id: id, value, message });
        this.progressSent.set(id, now);
      }
    }
    if (due !== null && this.closing === null) {
      this.progressScheduled = true;
      this.progressTimer = setTimeout(() => {
        this.sendProgress();
      }, due - now);
    }
  }

  // -- frames out -------------------------------------------------------------------------------

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flush();
    });
  }

  /** One batch per turn: START, then CREDIT, then one ACK and one FAIL with every item. */
  private flush(): void {
    this.flushScheduled = false;
    const conn = this.conn;
    if (conn === null || conn.closed) return;
    if (this.starts.length > 0) {
      conn.send(MessageType.START, { job_ids: this.starts });
      this.starts = [];
    }
    if (this.credits > 0) {
      conn.send(MessageType.CREDIT, { credits: this.credits });
      this.credits = 0;
    }
    if (this.acks.length > 0) {
      this.outcome(conn, MessageType.ACK, this.acks);
      this.acks = [];
    }
    if (this.fails.length > 0) {
      this.outcome(conn, MessageType.FAIL, this.fails);
      this.fails = [];
    }
  }

  /** Sends ACK, FAIL or RELEASE (`body`, default `{ items }`); per-item errors are reported. */
  private outcome(conn: Connection, type: number, items: Body[], body: Body = { items }): void {
    const p = conn.request(type, body, 30_000).then(
      (a) => {
        for (const e of a.body.errors as Body[]) {
          // CONFLICT or NOT_FOUND: the lease is gone (cancelled, deleted, expired, or, sent again
          // after a resume, taken back by the server): harmless, the job is not ours.
          if (e.code === "CONFLICT" || e.code === "NOT_FOUND") continue;
          const id = String((items[e.index as number])?.job_id);
          this.report(new SpitfireError(`outcome of job ${id}: ${e.code as string} ${e.message as string}`));
        }
      },
      (err: unknown) => {
        if (conn.closed && type !== MessageType.RELEASE) {
          // Cut by the lost connection: sent again if the worker resumes its id.
          const kind = type === MessageType.ACK ? "ack" : "fail";
          this.keepCut(items.map((item) => ({ outcome: (kind === "ack" ? { ack: item } : { fail: item }), counted: true })));
          return;
        }
        this.report(err);
      },
    );
    this.track(p);
  }

  private track(p: Promise<unknown>): void {
    this.outstanding.add(p);
    void p.finally(() => this.outstanding.delete(p));
  }

  private scheduleHeartbeat(): void {
    clearTimeout(this.heartbeatTimer);
    const conn = this.conn;
    if (conn === null) return;
    let interval = conn.welcome.heartbeat_interval;
    for (const run of this.running.values()) interval = Math.min(interval, run.d.timeout / 3);
    for (const d of this.buffered) interval = Math.min(interval, d.timeout / 3);
    this.heartbeatSeconds = interval;
    this.heartbeatTimer = setTimeout(() => {
      if (this.conn === conn && !conn.closed && this.running.size + this.buffered.length > 0) {
        this.track(conn.request(MessageType.HEARTBEAT, { job_ids: null, seconds: null }, 30_000).catch((err: unknown) => {
          this.report(err);
        }));
      }
      this.scheduleHeartbeat();
    }, Math.max(50, interval * 1000));
  }

  // -- shutdown ---------------------------------------------------------------------------------

  private async shutdown(graceMs: number): Promise<void> {
    const conn = this.conn;
    if (conn !== null && !conn.closed) {
      await conn.request(MessageType.UNSUBSCRIBE, {}, SHUTDOWN_REQUEST_MS).catch((err: unknown) => {
        this.report(err);
      });
      await this.release(conn, this.buffered.splice(0).map((d) => d.job_id));
    }
    if (this.running.size > 0 && !this.forced) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, graceMs);
        this.wakeGrace = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wakeGrace = null;
    }
    const left = [...this.running.values()];
    for (const run of left) {
      run.dropped = true;
      this.running.delete(run.d.job_id);
      run.controller.abort(new SpitfireError("the worker is shutting down", { code: "SHUTDOWN" }));
    }
    clearTimeout(this.heartbeatTimer);
    clearTimeout(this.progressTimer);
    this.progressPending.clear();
    this.progressSent.clear();
    if (conn !== null && !conn.closed) {
      this.flush();
      await this.release(conn, [...left.map((r) => r.d.job_id), ...this.buffered.splice(0).map((d) => d.job_id)]);
      // The bound's timer is cleared after: left running, it would keep the process alive 5 s more.
      let bound: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.allSettled([...this.outstanding]),
        new Promise((r) => {
          bound = setTimeout(r, SHUTDOWN_REQUEST_MS);
        }),
      ]);
      clearTimeout(bound);
      this.conn = null;
      await conn.close();
    }
  }

  private async release(conn: Connection, ids: string[]): Promise<void> {
    if (ids.length === 0) return;
    this.counts.released += ids.length;
    await conn.request(MessageType.RELEASE, { job_ids: ids }, SHUTDOWN_REQUEST_MS).catch((err: unknown) => {
      this.report(err);
    });
  }

  private installSignals(): void {
    const handler = (): void => {
      void this.close();
    };
    this.signalHandler = handler;
    process.on("SIGTERM", handler);
    process.on("SIGINT", handler);
  }

  private removeSignals(): void {
    if (this.signalHandler === null) return;
    process.off("SIGTERM", this.signalHandler);
    process.off("SIGINT", this.signalHandler);
    this.signalHandler = null;
  }

  private report(err: unknown): void {
    if (this.options.onError) this.options.onError(err);
    else console.error(`spitfire worker: ${err instanceof Error ? err.message : String(err)}`);
  }
}
