import { describe, expect, it } from "vitest";
import type { Stats } from "../api/types";
import { RateSeries } from "./realtime";

const stats = (at: number, succeeded: number, failed: number, enqueued = 0): Stats => ({
  at,
  total_jobs: 0,
  counts: {},
  queues: 0,
  workers: 0,
  connections: 0,
  uptime: 0,
  totals: { enqueued, succeeded, failed, retried: 0, dead: 0, cancelled: 0, deleted: 0 },
});

describe("RateSeries", () => {
  it("turns totals into per-second rates", () => {
    const s = new RateSeries();
    expect(s.push(stats(100, 10, 1))).toBeNull();
    expect(s.push(stats(101, 30, 1, 50))).toEqual({ at: 101, succeeded: 20, failed: 0, enqueued: 50 });
    expect(s.push(stats(103, 50, 5))?.succeeded).toBe(10);
    expect(s.points).toHaveLength(2);
  });

  it("leaves a gap after a silence and starts afresh after a restart", () => {
    const s = new RateSeries();
    s.push(stats(100, 10, 0));
    expect(s.push(stats(110, 20, 0))).toEqual({ at: 110, succeeded: null, failed: null, enqueued: null });
    expect(s.push(stats(111, 0, 0))).toBeNull(); // totals went down: a new server process
    expect(s.push(stats(112, 4, 0))?.succeeded).toBe(4);
  });

  it("keeps at most its capacity and tells its subscribers", () => {
    const s = new RateSeries(3);
    let told = 0;
    const off = s.subscribe(() => told++);
    for (let i = 0; i < 10; i++) s.push(stats(100 + i, i, 0));
    off();
    s.push(stats(200, 100, 0));
    expect(s.points.map((p) => p.at)).toEqual([108, 109, 200]); // 200 is a gap (null rates)
    expect(s.points[2]?.succeeded).toBeNull();
    expect(told).toBe(9);
  });
});
