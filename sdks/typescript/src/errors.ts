/**
 * Typed errors. Every error the SDK throws is a `SpitfireError`; those the server sends carry its
 * wire code (`code`), and `field` / `retryAfterMs` when the server gave them. Each is a class, so
 * `err instanceof Busy` works (native ES2022 classes keep the prototype chain of `Error` subclasses).
 */

import type { Job, JobState } from "./models.js";

/** Base class of every error this SDK throws. `code` is the protocol's error code or an SDK one. */
export class SpitfireError extends Error {
  /** The protocol's error code (`NOT_FOUND`, `BUSY`, ...) or an SDK code (`TIMEOUT`, ...). */
  readonly code: string;
  /** The argument at fault, when the server named one (`BAD_REQUEST`, `TOO_LARGE`). */
  readonly field: string | null;

  constructor(message: string, options: { code?: string; field?: string | null; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = options.code ?? (new.target as unknown as { CODE?: string }).CODE ?? "ERROR";
    this.field = options.field ?? null;
  }
}

/** No such job, queue or schedule. */
export class NotFound extends SpitfireError {
  static readonly CODE: string = "NOT_FOUND";
}
/** `get`/`cancel`/`retry`/`delete` of a job the server does not know. */
export class JobNotFound extends NotFound {}
/** `pause`/`resume`/`stats`/`deleteQueue` of a queue the server does not know. */
export class QueueNotFound extends NotFound {}
/** A schedule name the server does not know. */
export class ScheduleNotFound extends NotFound {}

/** Backpressure: try again after `retryAfterMs`. */
export class Busy extends SpitfireError {
  static readonly CODE: string = "BUSY";
  /** When to try again, in milliseconds (null: the server did not say). */
  readonly retryAfterMs: number | null;

  constructor(message: string, options: { field?: string | null; retryAfterMs?: number | null } = {}) {
    super(message, { code: "BUSY", field: options.field ?? null });
    this.retryAfterMs = options.retryAfterMs ?? null;
  }
}
/** The server has an auth token and this client's is missing or wrong. */
export class Unauthorized extends SpitfireError {
  static readonly CODE: string = "UNAUTHORIZED";
}
/** The server's disk is full: enqueues are refused, outcomes still commit. */
export class NoSpace extends SpitfireError {
  static readonly CODE: string = "NO_SPACE";
}
/** A malformed request or an invalid argument (`field` names it). */
export class BadRequest extends SpitfireError {
  static readonly CODE: string = "BAD_REQUEST";
}
/** A payload, result or frame over the server's limit. */
export class TooLarge extends BadRequest {
  static override readonly CODE: string = "TOO_LARGE";
}
/** The job's or queue's state does not allow the operation. */
export class Conflict extends SpitfireError {
  static readonly CODE: string = "CONFLICT";
}
/** The server does not speak this client's protocol version. */
export class UnsupportedVersion extends SpitfireError {
  static readonly CODE: string = "UNSUPPORTED_VERSION";
}
/** A bug in the server (`INTERNAL`, or a code this SDK does not know). */
export class ServerError extends SpitfireError {
  static readonly CODE: string = "INTERNAL";
}
/**
 * A cluster member that does not lead answered: nothing was done. `leader` is the leader's address
 * (`host:port`), null while none is known. A client given several addresses follows it itself.
 */
export class NotLeader extends SpitfireError {
  static readonly CODE: string = "NOT_LEADER";
  /** The leader's `host:port` (the address travels in the error's `field`), or null. */
  readonly leader: string | null;

  constructor(message: string, options: { leader?: string | null } = {}) {
    super(message, { code: "NOT_LEADER", field: options.leader ?? null });
    this.leader = options.leader ?? null;
  }
}
/** The connection dropped while the request was in flight: its outcome is unknown. */
export class ConnectionLost extends SpitfireError {
  static readonly CODE: string = "CONNECTION_LOST";
}
/** The client could not (re)connect within its connect timeout. */
export class NotConnected extends SpitfireError {
  static readonly CODE: string = "NOT_CONNECTED";
}
/** No answer within the request timeout (the request may still take effect). */
export class RequestTimeout extends SpitfireError {
  static readonly CODE: string = "TIMEOUT";
}
/** The peer broke the protocol (a malformed frame or body). */
export class ProtocolError extends SpitfireError {
  static readonly CODE: string = "PROTOCOL_ERROR";
}
/** A URL the SDK cannot use. */
export class InvalidURL extends SpitfireError {
  static readonly CODE: string = "INVALID_URL";
}
/** The client was closed. */
export class ClientClosed extends SpitfireError {
  static readonly CODE: string = "CLOSED";
}

/**
 * `wait()` found the job finished without a result: `job` is its final record (every attempt's
 * error and traceback in `job.errors`). `JobFailed` (dead) and `JobCancelled` are its kinds.
 */
export class JobError extends SpitfireError {
  static readonly CODE: string = "JOB_FAILED";
  /** The job as it ended. */
  readonly job: Job;
  /** The job's id. */
  readonly jobId: string;
  /** Its final state: `dead` or `cancelled`. */
  readonly state: JobState;
  /** The last attempt's error ("Name: message"), when there was one. */
  readonly error: string | null;

  constructor(message: string, job: Job) {
    super(message);
    this.job = job;
    this.jobId = job.id;
    this.state = job.state;
    this.error = job.errors.at(-1)?.error ?? null;
  }
}
/** `wait()`: the job is `dead` (out of attempts, or it threw `Permanent`). */
export class JobFailed extends JobError {}
/** `wait()`: the job was cancelled (it does not run again unless retried). */
export class JobCancelled extends JobError {
  static override readonly CODE: string = "JOB_CANCELLED";
}
/** `wait()` gave up before the job finished: `job` is the job as it was then (it goes on). */
export class WaitTimeout extends SpitfireError {
  static readonly CODE: string = "WAIT_TIMEOUT";
  /** The job as it was at the timeout. */
  readonly job: Job;

  constructor(message: string, job: Job) {
    super(message);
    this.job = job;
  }
}

/** What a request that targets a job, queue or schedule maps NOT_FOUND to. */
export type NotFoundKind = "job" | "queue" | "schedule" | null;

/** The typed error of an ERROR frame from the server. */
export function errorFromWire(
  code: string,
  message: string,
  field: string | null,
  retryAfter: number | null,
  notFound: NotFoundKind = null,
): SpitfireError {
  const opts = { field };
  switch (code) {
    case "NOT_FOUND":
      if (notFound === "job") return new JobNotFound(message, opts);
      if (notFound === "queue") return new QueueNotFound(message, opts);
      if (notFound === "schedule") return new ScheduleNotFound(message, opts);
      return new NotFound(message, opts);
    case "BUSY":
      return new Busy(message, { field, retryAfterMs: retryAfter === null ? null : retryAfter * 1000 });
    case "UNAUTHORIZED":
      return new Unauthorized(message, opts);
    case "NO_SPACE":
      return new NoSpace(message, opts);
    case "BAD_REQUEST":
      return new BadRequest(message, opts);
    case "TOO_LARGE":
      return new TooLarge(message, opts);
    case "CONFLICT":
      return new Conflict(message, opts);
    case "UNSUPPORTED_VERSION":
      return new UnsupportedVersion(message, opts);
    case "NOT_LEADER":
      return new NotLeader(message, { leader: field });
    default:
      return new ServerError(code === "INTERNAL" ? message : `${code}: ${message}`, { code, field });
  }
}
