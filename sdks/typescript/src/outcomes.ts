/**
 * What a job handler can throw to choose its job's fate, beyond returning (success) or throwing
 * any other error (a failed attempt, retried with backoff while attempts remain). The same
 * semantics as the Python SDK's `Permanent` and `RetryAfter`.
 */

/**
 * Fail the job for good: it goes `dead` at once, whatever attempts it has left. The attempt is
 * counted and recorded as "Permanent: message" with the stack. Throw it when retrying cannot help
 * (invalid input, a record that no longer exists).
 */
export class Permanent extends Error {
  constructor(message = "", options?: { cause?: unknown }) {
    super(message, options);
    this.name = "Permanent";
  }
}

/**
 * Run the job again `delayMs` from now without counting this as a failed attempt: no error is
 * recorded, `attempts` is unchanged and the backoff policy is not used (so `ctx.attempt` is the
 * same on the next run). A job that throws this every time runs forever: bound it yourself.
 */
export class RetryAfter extends Error {
  /** Milliseconds from now (>= 0). */
  readonly delayMs: number;

  constructor(delayMs: number, message = "") {
    if (!(delayMs >= 0) || !Number.isFinite(delayMs)) throw new RangeError(`RetryAfter needs delayMs >= 0, got ${delayMs}`);
    super(message || `retry after ${delayMs} ms`);
    this.name = "RetryAfter";
    this.delayMs = delayMs;
  }
}
