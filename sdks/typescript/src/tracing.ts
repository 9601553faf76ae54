// OpenTelemetry (docs/tracing.md in the repository): with @opentelemetry/api installed (an optional
// peer dependency) and a TracerProvider and a propagator registered by the application (NodeSDK, or
// NodeTracerProvider.register(), does both), each enqueue runs in a PRODUCER span "send <queue>"
// whose context the application's propagator injects into the jobs' headers (W3C `traceparent`,
// `tracestate`), so a worker in any language continues the trace; the worker runs each job in a
// CONSUMER span "process <queue>" that continues the trace of the job's headers and is the active
// span while the handler runs (with a context manager registered, as NodeSDK does, jobs enqueued by
// the handler stay in the trace). Names and attributes follow the OpenTelemetry messaging semantic
// conventions 1.44.0, as the Python SDK's. Without the API nothing is loaded and nothing is done;
// without a registered TracerProvider no span is made.

import { createRequire } from "node:module";
import { SDK_VERSION } from "./connection.js";

// The parts of @opentelemetry/api used here, typed locally: the SDK builds without the package.
interface Span {
  setAttribute(key: string, value: string | number): unknown;
  recordException(exception: Error | string): void;
  setStatus(status: { code: number; message?: string }): unknown;
  spanContext(): { traceId: string; spanId: string; traceFlags: number };
  end(): void;
}
interface Api {
  trace: {
    getTracer(name: string, version?: string): { startSpan(name: string, options: object, context?: unknown): Span };
    getTracerProvider(): unknown;
    setSpan(context: unknown, span: Span): unknown;
    getSpanContext(context: unknown): { traceId: string; spanId: string; traceFlags: number } | undefined;
    isSpanContextValid(spanContext: { traceId: string; spanId: string }): boolean;
  };
  context: { active(): unknown; with<T>(context: unknown, fn: () => T): T };
  propagation: {
    inject(context: unknown, carrier: Record<string, string>): void;
    extract(context: unknown, carrier: Record<string, string>): unknown;
  };
  ROOT_CONTEXT: unknown;
  ProxyTracerProvider: new () => { getDelegate(): unknown };
  SpanKind: { PRODUCER: number; CONSUMER: number };
  SpanStatusCode: { ERROR: number };
}

function load(): Api | null {
  try {
    return createRequire(import.meta.url)("@opentelemetry/api") as Api;
  } catch {
    return null; // not installed: tracing is off
  }
}

const api = load();

/** True when @opentelemetry/api could be loaded. */
export const TRACING_AVAILABLE = api !== null;

/** What the API's global provider delegates to while the application has registered none. */
const NOOP_PROVIDER: unknown = api === null ? null : new api.ProxyTracerProvider().getDelegate();

/**
 * True when the application has registered a TracerProvider. Without one the API's spans record
 * nothing, so none is made at all: they would still cost every enqueue and every job run.
 */
export function configured(): boolean {
  if (api === null) return false;
  const provider = api.trace.getTracerProvider() as { getDelegate?: () => unknown };
  return typeof provider.getDelegate !== "function" || provider.getDelegate() !== NOOP_PROVIDER;
}

function errorType(err: unknown): string {
  return err instanceof Error ? err.name : "Error";
}

function record(a: Api, span: Span, err: unknown): void {
  span.recordException(err instanceof Error ? err : String(err));
  span.setStatus({ code: a.SpanStatusCode.ERROR, message: err instanceof Error ? `${err.name}: ${err.message}` : String(err) });
  span.setAttribute("error.type", errorType(err));
}

/**
 * Runs one enqueue request, `run`, with the jobs' `headers`, in a "send <queue>" span when `on` and
 * the API is there (else as it is). A `traceparent` the caller gives is kept (the conventions: a
 * creation context of the caller's own is not changed) and the span links to it. `count`: the jobs
 * of a batch (null for one); `idOf` gives the one job's id from the result.
 */
export async function traced<T>(
  on: boolean,
  queue: string,
  headers: Record<string, string> | undefined,
  server: { host: string; port: number },
  count: number | null,
  run: (headers: Record<string, string> | undefined) => Promise<T>,
  idOf?: (result: T) => string,
): Promise<T> {
  if (!on || api === null || !configured()) return run(headers);
  const carrier: Record<string, string> = { ...(headers ?? {}) };
  const given = "traceparent" in carrier;
  const creation = given ? api.trace.getSpanContext(api.propagation.extract(api.ROOT_CONTEXT, carrier)) : undefined;
  const attributes: Record<string, string | number> = {
    "messaging.system": "spitfire",
    "messaging.operation.name": "send",
    "messaging.operation.type": "send",
    "messaging.destination.name": queue,
    "server.address": server.host,
    "server.port": server.port,
  };
  if (count !== null) attributes["messaging.batch.message_count"] = count;
  const links = creation && api.trace.isSpanContextValid(creation) ? [{ context: creation }] : [];
  const span = api.trace.getTracer("spitfire", SDK_VERSION).startSpan(`send ${queue}`, {
    kind: api.SpanKind.PRODUCER,
    attributes,
    links,
  });
  if (!given) api.propagation.inject(api.trace.setSpan(api.context.active(), span), carrier);
  let result: T;
  try {
    result = await run(Object.keys(carrier).length || headers ? carrier : undefined);
  } catch (err) {
    record(api, span, err);
    span.end();
    throw err;
  }
  if (idOf !== undefined) span.setAttribute("messaging.message.id", idOf(result));
  span.end();
  return result;
}

/** What a finished job's process span says in `messaging.spitfire.outcome`. */
export type RunOutcome = "succeeded" | "retry" | "dead" | "snoozed" | "cancelled" | "released";

/** One job run's CONSUMER span. */
export interface ProcessSpan {
  /** Runs `fn` with the span active: spans and enqueues made by it are the span's children. */
  within<T>(fn: () => T): T;
  /**
   * Ends the span with the run's outcome. `error`: what the handler threw, recorded (an exception
   * event, status ERROR, `error.type`) when the outcome is `retry` or `dead`; `failure`: the error
   * a failure without an exception reports ("JobArgumentError: ...", "LookupError: ...").
   */
  end(outcome: RunOutcome, error: unknown, failure: string | null): void;
}

/** What a process span says of the job (the worker's delivery). */
export interface TracedJob {
  job_id: string;
  queue: string;
  name: string;
  attempt: number;
  headers: Record<string, string> | null;
}

/**
 * Starts the "process <queue>" span of one run of job `d`, or returns null when there is no API or
 * no registered TracerProvider. Its parent is the creation context in the job's headers (a root
 * span without one, or with a malformed `traceparent`), and it links to that context too.
 */
export function startProcess(d: TracedJob, clientId: string): ProcessSpan | null {
  if (api === null || !configured()) return null;
  const a = api;
  const parent = a.propagation.extract(a.ROOT_CONTEXT, d.headers ?? {});
  const creation = a.trace.getSpanContext(parent);
  const links = creation && a.trace.isSpanContextValid(creation) ? [{ context: creation }] : [];
  const attributes = {
    "messaging.system": "spitfire",
    "messaging.operation.name": "process",
    "messaging.operation.type": "process",
    "messaging.destination.name": d.queue,
    "messaging.message.id": d.job_id,
    "messaging.client.id": clientId,
    "messaging.spitfire.job.name": d.name,
    "messaging.spitfire.attempt": d.attempt,
  };
  const tracer = a.trace.getTracer("spitfire", SDK_VERSION);
  const span = tracer.startSpan(`process ${d.queue}`, { kind: a.SpanKind.CONSUMER, attributes, links }, parent);
  const active = a.trace.setSpan(parent, span);
  return {
    within: (fn) => a.context.with(active, fn),
    end(outcome, error, failure) {
      span.setAttribute("messaging.spitfire.outcome", outcome);
      // snoozed (RetryAfter), cancelled, released: what was asked for, not an error.
      if (outcome === "retry" || outcome === "dead") {
        if (error !== undefined) record(a, span, error);
        else if (failure !== null) {
          span.setStatus({ code: a.SpanStatusCode.ERROR, message: failure });
          span.setAttribute("error.type", failure.split(":")[0] ?? "Error");
        }
      }
      span.end();
    },
  };
}
