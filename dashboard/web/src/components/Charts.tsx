// The two graphs of the overview and of a queue: the realtime one (per second, from the live stats
// events) and the history one (per minute or coarser, kept durably by the server).

import { useMemo, useState, useSyncExternalStore } from "react";
import { useHistory } from "../api/queries";
import { useLive } from "../live/LiveProvider";
import { Chart, type SeriesSpec } from "./Chart";
import { ErrorBox } from "./ErrorBox";

const REALTIME: SeriesSpec[] = [
  { label: "succeeded/s", color: "--c-succeeded", fill: true },
  { label: "failed/s", color: "--c-dead", fill: true },
];

export function RealtimeChart() {
  const { series } = useLive();
  const version = useSyncExternalStore(
    (cb) => series.subscribe(cb),
    () => series.points.length + (series.points[series.points.length - 1]?.at ?? 0),
  );
  const data = useMemo((): [number[], ...(number | null)[][]] => {
    const p = series.points;
    return [p.map((x) => x.at), p.map((x) => x.succeeded), p.map((x) => x.failed)];
    // version changes whenever a point is added
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [version, series]);
  // The last minute at first, growing to the 5 minutes kept.
  const times = data[0];
  const span = Math.max(60, Math.min(300, Math.ceil(((times[times.length - 1] ?? 0) - (times[0] ?? 0)) / 60) * 60));
  return (
    <div className="card">
      <div className="card-head">
        <h2>Realtime</h2>
        <span className="muted">jobs per second, last {span / 60} min</span>
      </div>
      {data[0].length < 2 ? <div className="chart-wait muted">Waiting for live stats…</div> : null}
      <Chart series={REALTIME} data={data} window={span} label="Succeeded and failed jobs per second" />
    </div>
  );
}

const RANGES = [
  { label: "1 h", minutes: 60, step: 60 },
  { label: "24 h", minutes: 1440, step: 900 },
  { label: "7 d", minutes: 10080, step: 3600 },
  { label: "30 d", minutes: 43200, step: 4 * 3600 },
];

const HISTORY: SeriesSpec[] = [
  { label: "succeeded", color: "--c-succeeded", fill: true },
  { label: "failed", color: "--c-dead", fill: true },
  { label: "enqueued", color: "--c-enqueued" },
];

export function HistoryChart({ queue }: { queue?: string }) {
  const [range, setRange] = useState(0);
  const r = RANGES[range] ?? RANGES[0]!;
  const { data, error } = useHistory(r.minutes, r.step, queue);
  const chart = useMemo((): [number[], ...(number | null)[][]] | null => {
    if (!data) return null;
    const p = data.points;
    return [p.map((x) => x.at), p.map((x) => x.succeeded), p.map((x) => x.failed), p.map((x) => x.enqueued)];
  }, [data]);
  return (
    <div className="card">
      <div className="card-head">
        <h2>History</h2>
        <div className="segmented" role="group" aria-label="History range">
          {RANGES.map((x, i) => (
            <button
              type="button"
              key={x.label}
              className={i === range ? "active" : ""}
              aria-pressed={i === range}
              onClick={() => setRange(i)}
            >
              {x.label}
            </button>
          ))}
        </div>
      </div>
      <ErrorBox error={error} />
      {data === null ? (
        <div className="chart-wait muted">No history yet: this server does not keep per-minute counts.</div>
      ) : chart ? (
        <Chart series={HISTORY} data={chart} label={`Jobs per ${r.step / 60} minutes`} bars={false} />
      ) : (
        <div className="chart-wait muted">Loading…</div>
      )}
    </div>
  );
}
