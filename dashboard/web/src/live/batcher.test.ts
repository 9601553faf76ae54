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

  it("takes a server batch and says when jobs went unnamed", () => {
    const flushes: [string[], string[], boolean][] = [];
    const b = new ChangeBatcher((ids, queues, unnamed) => flushes.push([[...ids], [...queues], unnamed]), 250, 3);
    b.addMany(["a", "b"], ["q"], false);
    vi.advanceTimersByTime(250);
    b.addMany(["c"], ["r"], true);
    vi.advanceTimersByTime(250);
    b.addMany(["d", "e", "f", "g"], ["s"], false);
    vi.advanceTimersByTime(250);
    expect(flushes).toEqual([
      [["a", "b"], ["q"], false],
      [["c"], ["r"], true],
      [["d", "e", "f"], ["s"], true],
    ]);
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
