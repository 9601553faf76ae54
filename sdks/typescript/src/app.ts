/**
 * `App` and typed jobs: declare a handler once with `app.job(name, options, handler)`; the handle
 * it returns enqueues payloads type-checked against the handler's payload type, and `app.worker()`
 * runs the handlers.
 *
 * A payload is one msgpack value. For jobs shared with Python, make it an object: the Python SDK
 * sends a job's keyword arguments as a msgpack map, so `{ to: "a@b.c" }` here is `to="a@b.c"` there.
 */

import { Client, type ClientOptions, type EnqueueManyOptions, type EnqueueOptions } from "./client.js";
import { BadRequest, SpitfireError } from "./errors.js";
import type { Backoff, Enqueued } from "./models.js";
import { encodePayload } from "./payload.js";
import { Worker, type WorkerOptions } from "./worker.js";

/** The queue of a job declared without one. */
export const DEFAULT_QUEUE = "default";

/** What a handler gets besides its payload. */
export interface JobContext {
  /** The job's id. */
  readonly id: string;
  readonly queue: string;
  /** The handler name. */
  readonly name: string;
  /** This run's attempt number, 1 for the first. */
  readonly attempt: number;
  readonly maxAttempts: number;
  readonly priority: number;
  /** Headers given at enqueue (trace context, user tags). */
  readonly headers: Readonly<Record<string, string>>;
  /** When the job was enqueued. */
  readonly createdAt: Date;
  /** The lease in ms: the worker heartbeats while the handler runs. */
  readonly timeoutMs: number;
  /** Aborted when the job is cancelled or deleted, or when a shutdown's grace period ends. */
  readonly signal: AbortSignal;
}

/** A job handler: its payload type is what `enqueue` accepts. */
export type Handler<P, R> = (payload: P, ctx: JobContext) => R | Promise<R>;

/**
 * A runtime validator the user already has: a Standard Schema (zod >= 3.24, valibot >= 1.0,
 * arktype) or any object with a zod-style `parse(value)`.
 */
export type PayloadSchema<P> =
  | {
      readonly "~standard": {
        validate: (value: unknown) =>
          | { value: P; issues?: undefined }
          | { issues: readonly { message: string }[] }
          | Promise<unknown>;
      };
    }
  | { parse: (value: unknown) => P };

/** Options of a job declaration: the defaults of each enqueue (which may override them). */
export interface JobOptions<P = unknown> {
  /** The queue its jobs go to (default "default"). */
  queue?: string;
  priority?: number;
  maxAttempts?: number;
  backoff?: Backoff | number[];
  /** The lease in ms. */
  timeoutMs?: number;
  headers?: Record<string, string>;
  /** Validates payloads at enqueue (producer) and before the handler runs (worker). */
  schema?: PayloadSchema<P>;
}

/** Validates `value` with a schema; throws BadRequest naming the problem. */
export function validate<P>(schema: PayloadSchema<P> | undefined, value: unknown, where: string): P {
  if (schema === undefined) return value as P;
  if ("~standard" in schema) {
    const r = schema["~standard"].validate(value);
    if (r instanceof Promise) throw new BadRequest(`${where}: asynchronous schemas are not supported`);
    const res = r as { value?: P; issues?: readonly { message: string }[] };
    if (res.issues) throw new BadRequest(`${where}: the payload is invalid: ${res.issues.map((i) => i.message).join("; ")}`);
    return res.value as P;
  }
  try {
    return schema.parse(value);
  } catch (err) {
    throw new BadRequest(`${where}: the payload is invalid: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
}

/** A declared job: `enqueue(payload)` type-checks `payload` against the handler's. */
export class JobHandle<P, R = unknown> {
  constructor(
    private readonly app: App,
    /** The handler name workers dispatch on. */
    readonly name: string,
    readonly options: Readonly<JobOptions<P>>,
    readonly handler: Handler<P, R>,
  ) {}

  get queue(): string {
    return this.options.queue ?? DEFAULT_QUEUE;
  }

  /** Enqueues one job; returns its id once it is durable. */
  async enqueue(payload: P, options: EnqueueOptions = {}): Promise<string> {
    return (await this.enqueueDetailed(payload, options)).id;
  }

  /** `enqueue`, also saying whether the job was created (false: its idempotency key named one). */
  async enqueueDetailed(payload: P, options: EnqueueOptions = {}): Promise<Enqueued> {
    const value = validate(this.options.schema, payload, `${this.name}.enqueue()`);
    return this.app.client.enqueueRaw(this.queue, this.name, this.encode(value), { ...this.defaults(), ...options });
  }

  /** Enqueues many jobs atomically; returns their ids in order. */
  async enqueueMany(payloads: P[], options: EnqueueManyOptions = {}): Promise<string[]> {
    const values = payloads.map((p) => validate(this.options.schema, p, `${this.name}.enqueueMany()`));
    return this.app.client.enqueueMany(this.queue, this.name, values, { ...this.defaults(), ...options });
  }

  private encode(value: unknown): Uint8Array {
    try {
      return encodePayload(value);
    } catch (err) {
      throw new BadRequest(`${this.name}.enqueue(): the payload cannot be encoded as msgpack: ${String(err)}`);
    }
  }

  private defaults(): EnqueueOptions {
    const o = this.options;
    const d: EnqueueOptions = {};
    if (o.priority !== undefined) d.priority = o.priority;
    if (o.maxAttempts !== undefined) d.maxAttempts = o.maxAttempts;
    if (o.backoff !== undefined) d.backoff = o.backoff;
    if (o.timeoutMs !== undefined) d.timeoutMs = o.timeoutMs;
    if (o.headers !== undefined) d.headers = o.headers;
    return d;
  }
}

/** Declares jobs and runs workers for them. */
export class App {
  readonly url: string | null;
  readonly options: ClientOptions;
  private readonly jobs = new Map<string, JobHandle<never>>();
  private clientInstance: Client | null = null;

  constructor(url?: string | null, options: ClientOptions = {}) {
    this.url = url ?? null;
    this.options = options;
  }

  /** The client the handles enqueue with (made on first use). */
  get client(): Client {
    this.clientInstance ??= new Client(this.url, this.options);
    return this.clientInstance;
  }

  /** Declares a job. Its handler's payload type is what the returned handle's `enqueue` accepts. */
  job<P, R = unknown>(name: string, options: JobOptions<P>, handler: Handler<P, R>): JobHandle<P, R> {
    if (!name || name.length > 200) throw new BadRequest(`job name ${JSON.stringify(name)} must have 1..200 characters`);
    if (this.jobs.has(name)) throw new SpitfireError(`a job named ${JSON.stringify(name)} is declared twice`, { code: "CONFLICT" });
    const handle = new JobHandle<P, R>(this, name, options, handler);
    this.jobs.set(name, handle as unknown as JobHandle<never>);
    return handle;
  }

  /** The declared job of a handler name. */
  handler(name: string): JobHandle<unknown> | undefined {
    return this.jobs.get(name) as JobHandle<unknown> | undefined;
  }

  /** Every declared job's name. */
  get jobNames(): string[] {
    return [...this.jobs.keys()];
  }

  /** The queues the declared jobs go to. */
  get queues(): string[] {
    return [...new Set([...this.jobs.values()].map((j) => j.queue))];
  }

  /** A worker running this app's jobs (`await worker.run()`). */
  worker(options: WorkerOptions = {}): Worker {
    return new Worker(this, options);
  }

  /** Closes the app's client. */
  async close(): Promise<void> {
    await this.clientInstance?.close();
    this.clientInstance = null;
  }
}
