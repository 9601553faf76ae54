// The trace a job belongs to, from the W3C `traceparent` header the SDKs put in its headers
// (docs/tracing.md), and the link the server's `--trace-url-template` makes of it.

// version-traceid-parentid-flags, lower-case hex; a later version may append fields after a "-".
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;

/** The trace id of a job's `traceparent` header, or null without one (or with a malformed one:
 * W3C Trace Context's rules, so that an id shown here is one a tracing backend knows). */
export function traceIdOf(headers: Record<string, string> | null | undefined): string | null {
  const value = headers?.traceparent?.trim();
  if (!value) return null;
  const m = TRACEPARENT.exec(value);
  const [version, traceId, spanId, rest] = [m?.[1], m?.[2], m?.[3], m?.[5]];
  if (!version || !traceId || !spanId) return null;
  if (version === "ff" || (version === "00" && rest !== undefined)) return null;
  if (/^0+$/.test(traceId) || /^0+$/.test(spanId)) return null;
  return traceId;
}

/** The URL of a trace from the server's template (null when the server has none). */
export function traceUrl(template: string | null | undefined, traceId: string): string | null {
  if (!template || !template.includes("{trace_id}")) return null;
  return template.split("{trace_id}").join(encodeURIComponent(traceId));
}
