import { describe, expect, it } from "vitest";
import { absoluteTime, count, duration, epochToLocalInput, localInputToEpoch, prettyJson, rate, relativeTime } from "./format";

describe("relativeTime", () => {
  const now = 1_800_000_000;
  it.each([
    [now, "now"],
    [now - 3, "now"],
    [now - 42, "42 sec. ago"],
    [now - 180, "3 min. ago"],
    [now - 2 * 3600, "2 hr. ago"],
    [now - 3 * 86400, "3 days ago"],
    [now + 120, "in 2 min."],
    [now - 400 * 86400, "1 yr. ago"],
  ])("%d -> %s", (at, text) => {
    expect(relativeTime(at, now, "en")).toBe(text);
  });
});

describe("absoluteTime", () => {
  it("writes the date and time in the timezone asked for", () => {
    expect(absoluteTime(1_800_000_000, "UTC")).toBe("2027-01-15 08:00:00");
    expect(absoluteTime(1_800_000_000, "Asia/Tokyo")).toBe("2027-01-15 17:00:00");
  });
});

describe("duration", () => {
  it.each([
    [0.0042, "4 ms"],
    [0.84, "840 ms"],
    [3.21, "3.2 s"],
    [42, "42 s"],
    [245, "4m 05s"],
    [3 * 3600 + 7 * 60, "3h 07m"],
    [2 * 86400 + 4 * 3600, "2d 04h"],
    [-1, "0 ms"],
    [Number.NaN, "–"],
  ])("%d s -> %s", (s, text) => {
    expect(duration(s)).toBe(text);
  });
});

describe("numbers", () => {
  it("counts with separators and rates compactly", () => {
    expect(count(1234567)).toBe("1,234,567");
    expect(count(undefined)).toBe("–");
    expect(rate(0)).toBe("0");
    expect(rate(0.25)).toBe("0.25");
    expect(rate(12.5)).toBe("12.5");
    expect(rate(12)).toBe("12");
    expect(rate(45800)).toBe("45,800");
  });
});

describe("the rest", () => {
  it("pretty-prints JSON, null for nothing", () => {
    expect(prettyJson({ a: [1] })).toBe('{\n  "a": [\n    1\n  ]\n}');
    expect(prettyJson(undefined)).toBe("null");
  });
  it("round-trips datetime-local values in the browser's timezone", () => {
    const at = localInputToEpoch("2026-12-03T05:33");
    expect(at).not.toBeNull();
    expect(epochToLocalInput(at ?? 0)).toBe("2026-12-03T05:33");
    expect(localInputToEpoch("")).toBeNull();
    expect(localInputToEpoch("garbage")).toBeNull();
  });
});
