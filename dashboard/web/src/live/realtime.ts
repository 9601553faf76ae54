// Per-second rates from the once-a-second `stats` events: the realtime graph of the overview.
// Each point is the change of the server's totals since the previous event, divided by the time
// between them. A gap (no event for more than twice the interval, e.g. a reconnection) leaves a
// hole in the line instead of a spike, and a server restart (totals going down) starts afresh.

import type { Stats } from "../api/types";

export interface RatePoint {
  at: number;
  succeeded: number | null;
  failed: number | null;
  enqueued: number | null;
}

export class RateSeries {
  private last: { at: number; succeeded: number; failed: number; enqueued: number } | null = null;
  readonly points: RatePoint[] = [];
  private readonly listeners = new Set<() => void>();

  constructor(
    /** Points kept (seconds of history at one event a second). */
    readonly capacity = 300,
    /** A longer silence than this (seconds) is a gap. */
    readonly maxGap = 2.5,
  ) {}

  /** Add one stats event; returns the point it made, or null for the first or after a restart. */
  push(stats: Stats, receivedAt: number = Date.now() / 1000): RatePoint | null {
    const at = stats.at ?? receivedAt;
    const t = stats.totals;
    const sample = { at, succeeded: t.succeeded, failed: t.failed, enqueued: t.enqueued };
    const prev = this.last;
    this.last = sample;
    if (prev === null || at <= prev.at || t.succeeded < prev.succeeded || t.failed < prev.failed) return null;
    const dt = at - prev.at;
    let point: RatePoint;
    if (dt > this.maxGap) {
      point = { at, succeeded: null, failed: null, enqueued: null };
    } else {
      point = {
        at,
        succeeded: (t.succeeded - prev.succeeded) / dt,
        failed: (t.failed - prev.failed) / dt,
        enqueued: Math.max(0, t.enqueued - prev.enqueued) / dt,
      };
    }
    this.points.push(point);
    if (this.points.length > this.capacity) this.points.splice(0, this.points.length - this.capacity);
    for (const l of this.listeners) l();
    return point;
  }

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
