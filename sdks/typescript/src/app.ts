/**
 * `App` and typed jobs: declare a handler once with `app.job(name, options, handler)`; the handle
 * it returns enqueues payloads type-checked against the handler's payload type, and `app.worker()`
 * runs the handlers.
 *
 * A payload is one msgpack value. For jobs shared with Python, make it an object: the Python SDK
 * sends a job's keyword arguments as a msgpack map, so `{ to: "a@b.c" }` here is `to="a@b.c"` there.
 */

import { Client, type ClientOptions, type EnqueueManyOptions, type EnqueueOptions } from "./client.js";
import { BadRequest, SpitfireError, TooLarge as TooLargeError } from "./errors.js";
import type { Backoff, JobDefinitionSpec, JobId } from "./models.js";
import { encodePayload } from "./payload.js";
import { Worker, type WorkerOptions } from "./worker.js";

/** How a server older than a request type answers it. */
const UNKNOWN_TYPE = "unknown message type";

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
  /**
   * Reports how far the job is: `value` from 0.0 to 1.0 (or null) and/or a short `message` (at
   * most 1,000 characters), e.g. `ctx.progress(0.4, "resized 4 of 10")`. Cheap to call often:
   * the worker sends at most 4 reports a second per job (the first at once, then the latest every
   * 250 ms). The server keeps the last one in memory while the job runs (`client.get(id).progress`,
   * the HTTP API, `event: progress`); it is not logged, so a server restart forgets it. Throws a
   * `RangeError` (or `TypeError`) for a value outside 0..1 or a message too long.
   */
  progress(value?: number | null, message?: string | null): void;
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
  /**
   * The JSON Schema (Draft 2020-12) of the payload registered with the job's definition. Default:
   * what `schema` exports, when it is a Standard JSON Schema (zod >= 4.2, arktype >= 2.1.28,
   * valibot through `toStandardJsonSchema`); none otherwise.
   */
  jsonSchema?: Record<string, unknown>;
  /** The server checks every payload of the job against its JSON Schema at enqueue (needs one). */
  validate?: boolean;
}

/** A schema's Standard JSON Schema export of its input, or undefined when it has none. */
function exportJsonSchema(schema: unknown, where: string): Record<string, unknown> | undefined {
  if (schema === null || typeof schema !== "object" || !("~standard" in schema)) return undefined;
  const std = (schema as { "~standard": { jsonSchema?: { input?: unknown } } })["~standard"];
  const input = std.jsonSchema?.input;
  if (typeof input !== "function") return undefined;
  try {
    return (input as (o: { target: string }) => Record<string, unknown>).call(std.jsonSchema, { target: "draft-2020-12" });
  } catch (err) {
    throw new BadRequest(`${where}: the schema cannot be exported as JSON Schema: ${err instanceof Error ? err.message : String(err)}; give jsonSchema explicitly`, {
      field: "schema",
      cause: err,
    });
  }
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

/** What `@job` recorded about a method. */
interface Declaration {
  name: string;
  options: JobOptions;
}

/** Decorated methods (the functions themselves: the same for every instance of their class). */
const DECLARED = new WeakMap<object, Declaration>();

/** What `@job` recorded about a method, if it is decorated. */
function declaration(fn: object): Declaration | undefined {
  return DECLARED.get(fn);
}

/**
 * A TC39 standard decorator (TypeScript 5, without `experimentalDecorators`) declaring a method
 * as the handler of job `name`, with the options of `app.job`:
 *
 * ```ts
 * class Emails {
 *   constructor(private readonly mailer: Mailer) {}
 *
 *   @job("emails.send", { queue: "emails", maxAttempts: 5 })
 *   async send(payload: { to: string }, ctx: JobContext) {
 *     await this.mailer.deliver(payload.to, { signal: ctx.signal });
 *   }
 * }
 *
 * app.register(new Emails(mailer));                          // its workers run emails.send
 * await app.jobFor(Emails.prototype.send).enqueue({ to: "a@b.c" });  // payload type-checked
 * ```
 *
 * The method runs with `this` bound to the registered object. Decorating records the declaration
 * only; `app.register(instance)` declares the jobs with an app (so one class may serve several
 * apps). Private (`#name`) methods cannot be decorated: `register` could not reach them.
 */
export function job(name: string, options: JobOptions = {}) {
  checkName(name);
  return function <This, P, R>(
    method: (this: This, payload: P, ctx: JobContext) => R,
    context: ClassMethodDecoratorContext<This, (this: This, payload: P, ctx: JobContext) => R>,
  ): void {
    // Called from JavaScript (or with a cast) on something else than a method: say what it takes.
    if ((context.kind as string) !== "method") throw new TypeError(`@job("${name}") decorates methods, not a ${context.kind}`);
    if (context.private) {
      throw new TypeError(`@job("${name}") cannot decorate the private method ${String(context.name)}: make it a public method`);
    }
    DECLARED.set(method, { name, options });
  };
}

function checkName(name: string): void {
  if (typeof name !== "string" || !name || name.length > 200) {
    throw new BadRequest(`job name ${JSON.stringify(name)} must have 1..200 characters`);
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

  /** Enqueues one job; returns its id once it is durable (a `JobId`: `created`, `wait()`). */
  async enqueue(payload: P, options: EnqueueOptions = {}): Promise<JobId> {
    const value = validate(this.options.schema, payload, `${this.name}.enqueue()`);
    return this.app.client.enqueueRaw(this.queue, this.name, this.encode(value), { ...this.defaults(), ...options });
  }

  /** `enqueue` (kept for compatibility: the `JobId` it returns has `created` and `state`). */
  async enqueueDetailed(payload: P, options: EnqueueOptions = {}): Promise<JobId> {
    return this.enqueue(payload, options);
  }

  /** Enqueues many jobs atomically; returns their ids in order. */
  async enqueueMany(payloads: P[], options: EnqueueManyOptions = {}): Promise<string[]> {
    const values = payloads.map((p) => validate(this.options.schema, p, `${this.name}.enqueueMany()`));
    return this.app.client.enqueueMany(this.queue, this.name, values, { ...this.defaults(), ...options });
  }

  /** The definition `app.registerJobs` and the worker send the server for this job. */
  definition(): JobDefinitionSpec {
    const o = this.options;
    const schema = o.jsonSchema ?? exportJsonSchema(o.schema, `job ${JSON.stringify(this.name)}`);
    if (o.validate === true && schema === undefined) {
      throw new BadRequest(
        `job ${JSON.stringify(this.name)}: validate needs a JSON Schema: give jsonSchema, or a schema with a Standard JSON Schema export`,
        { field: "validate" },
      );
    }
    return {
      name: this.name,
      queue: this.queue,
      priority: o.priority ?? 0,
      maxAttempts: o.maxAttempts ?? null,
      backoff: o.backoff ?? null,
      timeoutMs: o.timeoutMs ?? null,
      schema: schema ?? null,
      validate: o.validate ?? false,
    };
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
  /** The handle `register` declared for each decorated method. */
  private readonly byMethod = new WeakMap<object, JobHandle<unknown>>();
  /** Handles of decorated methods never registered (`jobFor` in a producer). */
  private readonly enqueueOnly = new WeakMap<object, JobHandle<unknown>>();
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
    checkName(name);
    if (this.jobs.has(name)) throw new SpitfireError(`a job named ${JSON.stringify(name)} is declared twice`, { code: "CONFLICT" });
    const handle = new JobHandle<P, R>(this, name, options, handler);
    handle.definition(); // refuses a bad `validate` / schema now, not when a worker starts
    this.jobs.set(name, handle as unknown as JobHandle<never>);
    return handle;
  }

  /**
   * Declares the jobs of an object's `@job`-decorated methods (TC39 decorators, see `job`), each
   * running bound to `target`: an instance for its class's methods, or a class for its static
   * ones. Returns their handles; `jobFor(method)` gives one with its payload type.
   */
  register(target: object): JobHandle<unknown>[] {
    const found: [fn: object, decl: Declaration][] = [];
    const seen = new Set<string>();
    // Own and inherited members, up to (not including) what every object or function has.
    for (let o: object | null = target; o !== null && o !== Object.prototype && o !== Function.prototype; o = Object.getPrototypeOf(o) as object | null) {
      for (const key of Object.getOwnPropertyNames(o)) {
        if (seen.has(key)) continue; // an override hides the method it overrides, decorated or not
        seen.add(key);
        const fn: unknown = Object.getOwnPropertyDescriptor(o, key)?.value;
        if (typeof fn !== "function") continue;
        const decl = declaration(fn);
        if (decl !== undefined) found.push([fn, decl]);
      }
    }
    if (found.length === 0) {
      const what = typeof target === "function" ? `class ${target.name}` : `a ${target.constructor.name}`;
      throw new BadRequest(`${what} has no @job methods: decorate its methods with @job(name, options) before registering it`);
    }
    // All or nothing: a name declared already declares none of them.
    for (const [, decl] of found) {
      if (this.jobs.has(decl.name) || found.filter(([, d]) => d.name === decl.name).length > 1) {
        throw new SpitfireError(`a job named ${JSON.stringify(decl.name)} is declared twice`, { code: "CONFLICT" });
      }
    }
    return found.map(([fn, decl]) => {
      const method = fn as Handler<unknown, unknown>;
      const handle = this.job(decl.name, decl.options, (payload, ctx) => method.call(target, payload, ctx));
      this.byMethod.set(fn, handle);
      return handle;
    });
  }

  /**
   * The handle of a `@job`-decorated method (`app.jobFor(Emails.prototype.send)`), its payload
   * type inferred from the method's: the one `register` declared, or, in a process that only
   * enqueues (and never registered the class), a handle that enqueues to the same name and queue.
   */
  jobFor<P, R>(method: (payload: P, ctx: JobContext) => R): JobHandle<P, Awaited<R>> {
    const registered = this.byMethod.get(method);
    if (registered !== undefined) return registered as unknown as JobHandle<P, Awaited<R>>;
    const decl = declaration(method);
    if (decl === undefined) {
      throw new BadRequest(`${method.name || "this function"} is not a @job-decorated method: decorate it with @job(name, options)`);
    }
    let handle = this.enqueueOnly.get(method);
    if (handle === undefined) {
      handle = new JobHandle<unknown>(this, decl.name, decl.options, () => {
        throw new SpitfireError(`${decl.name} was never registered with this app: app.register(instance) runs it`);
      });
      this.enqueueOnly.set(method, handle);
    }
    return handle as unknown as JobHandle<P, Awaited<R>>;
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

  /** The definition of every declared job (what `registerJobs` sends). */
  definitions(): JobDefinitionSpec[] {
    return [...this.jobs.values()].map((j) => j.definition());
  }

  /**
   * Registers every declared job's definition with the server (what the worker does before it
   * subscribes), so enqueues made elsewhere (HTTP, the CLI, other languages) get the job's options.
   * Returns false when the server is older than job definitions (it does not keep them; nothing
   * else is affected). Throws `BadRequest` naming the job when the server refuses a definition.
   */
  async registerJobs(client: Client = this.client): Promise<boolean> {
    const defs = this.definitions();
    if (defs.length === 0) return true;
    try {
      await client.registerJobDefinitions(defs);
    } catch (err) {
      if (err instanceof BadRequest && !(err instanceof TooLargeError) && err.message.includes(UNKNOWN_TYPE)) return false;
      if (err instanceof SpitfireError && err.field?.startsWith("definitions[")) {
        const i = Number(err.field.slice("definitions[".length).split("]")[0]);
        const name = defs[i]?.name;
        if (name !== undefined) err.message = `job ${JSON.stringify(name)} (app.job): ${err.message}`;
      }
      throw err;
    }
    return true;
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
