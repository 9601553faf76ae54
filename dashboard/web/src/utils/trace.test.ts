import { describe, expect, it } from "vitest";
import { traceIdOf, traceUrl } from "./trace";

const ID = "4bf92f3577b34da6a3ce929d0e0e4736";

describe("traceIdOf", () => {
  it("reads the trace id of a traceparent header", () => {
    expect(traceIdOf({ traceparent: `00-${ID}-00f067aa0ba902b7-01`, tenant: "x" })).toBe(ID);
    expect(traceIdOf({ traceparent: ` 01-${ID}-00f067aa0ba902b7-00-later ` })).toBe(ID);
  });

  it("is null without a header or with a malformed one", () => {
    expect(traceIdOf(null)).toBeNull();
    expect(traceIdOf({})).toBeNull();
    for (const bad of [
      "garbage",
      `00-${ID.toUpperCase()}-00f067aa0ba902b7-01`,
      `00-${"0".repeat(32)}-00f067aa0ba902b7-01`,
      `00-${ID}-${"0".repeat(16)}-01`,
      `ff-${ID}-00f067aa0ba902b7-01`,
      `00-${ID}-00f067aa0ba902b7-01-extra`,
      `00-${ID}-00f067aa0ba902b7`,
    ]) {
      expect(traceIdOf({ traceparent: bad }), bad).toBeNull();
    }
  });
});

describe("traceUrl", () => {
  it("puts the id into the template", () => {
    expect(traceUrl("https://tempo.example/trace/{trace_id}", ID)).toBe(`https://tempo.example/trace/${ID}`);
    expect(traceUrl("https://x.example/?a={trace_id}&b={trace_id}", ID)).toBe(`https://x.example/?a=${ID}&b=${ID}`);
  });

  it("is null without a template", () => {
    expect(traceUrl(null, ID)).toBeNull();
    expect(traceUrl(undefined, ID)).toBeNull();
    expect(traceUrl("https://no-placeholder.example/", ID)).toBeNull();
  });
});
