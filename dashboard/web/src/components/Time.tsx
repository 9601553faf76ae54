import { absoluteTime, relativeTime } from "../utils/format";
import { useNow } from "../utils/useNow";

/** A time as "3 min ago", with the date and time (browser's timezone) on hover. */
export function Time({ at, fallback = "–" }: { at: number | null | undefined; fallback?: string }) {
  useNow(); // re-render as time passes; the text is computed from the clock itself
  if (at === null || at === undefined || at <= 0) return <span className="muted">{fallback}</span>;
  const abs = absoluteTime(at);
  return (
    <time dateTime={new Date(at * 1000).toISOString()} title={abs}>
      {relativeTime(at, Date.now() / 1000)}
    </time>
  );
}

/** A time written out, with the relative time beside it. */
export function FullTime({ at }: { at: number | null | undefined }) {
  useNow();
  if (at === null || at === undefined || at <= 0) return <span className="muted">–</span>;
  return (
    <span>
      {absoluteTime(at)} <span className="muted">({relativeTime(at, Date.now() / 1000)})</span>
    </span>
  );
}
