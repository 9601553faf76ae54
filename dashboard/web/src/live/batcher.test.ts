import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { ChangeBatcher } from "./batcher";

describe("ChangeBatcher", () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it("flushes once per interval whatever the number of events", () => {
    const flushes: [string[], string[]][] = [];
    const b = new ChangeBatcher((ids, queues) => flushes.push([[...ids], [...queues]]), 500, 2);
    for (let i = 0; i < 10_000; i++) b.add(`j${i}`, i % 2 ? "a" : "b");
    expect(flushes).toEqual([]);
    vi.advanceTimersByTime(500);
    expect(flushes).toEqual([[["j0", "j1"], ["b", "a"]]]);
    b.add("x", "c");
    vi.advanceTimersByTime(499);
    expect(flushes).toHaveLength(1);
    vi.advanceTimersByTime(1);
    expect(flushes[1]).toEqual([["x"], ["c"]]);
  });

  it("flushes nothing after cancel", () => {
    const flush = vi.fn();
    const b = new ChangeBatcher(flush, 100);
    b.add("a", "q");
    b.cancel();
    vi.advanceTimersByTime(1000);
    expect(flush).not.toHaveBeenCalled();
  });
});
