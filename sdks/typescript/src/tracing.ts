// OpenTelemetry for producers (docs/tracing.md in the repository): with @opentelemetry/api installed
// (an optional peer dependency) and a TracerProvider and a propagator registered by the application
// (NodeSDK, or NodeTracerProvider.register(), does both), each enqueue runs in a PRODUCER span
// "send <queue>" whose context the application's propagator injects into the jobs' headers (W3C
// `traceparent`, `tracestate`), so a worker in any language continues the trace. Names and
// attributes follow the OpenTelemetry messaging semantic conventions 1.44.0, as the Python SDK's.
// Without the API nothing is loaded and nothing is done.

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
    getTracer(name: string, version?: string): { startSpan(name: string, options: object): Span };
    setSpan(context: unknown, span: Span): unknown;
    getSpanContext(context: unknown): { traceId: string; spanId: string; traceFlags: number } | undefined;
    isSpanContextValid(spanContext: { traceId: string; spanId: string }): boolean;
  };
  context: { active(): unknown };
  propagation: {
    inject(context: unknown, carrier: Record<string, string>): void;
    extract(context: unknown, carrier: Record<string, string>): unknown;
  };
  ROOT_CONTEXT: unknown;
  SpanKind: { PRODUCER: number };
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
  if (!on || api === null) return run(headers);
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
    span.recordException(err instanceof Error ? err : String(err));
    span.setStatus({ code: api.SpanStatusCode.ERROR, message: err instanceof Error ? `${err.name}: ${err.message}` : String(err) });
    span.setAttribute("error.type", err instanceof Error ? err.name : "Error");
    span.end();
    throw err;
  }
  if (idOf !== undefined) span.setAttribute("messaging.message.id", idOf(result));
  span.end();
  return result;
}
