// Formatting of times, durations and numbers. Times are epoch seconds (the API's unit) and are shown
// in the browser's timezone; `now` is a parameter so that tests need no clock.

const UNITS: [Intl.RelativeTimeFormatUnit, number][] = [
  ["year", 365 * 86400],
  ["month", 30 * 86400],
  ["week", 7 * 86400],
  ["day", 86400],
  ["hour", 3600],
  ["minute", 60],
  ["second", 1],
];

/** "3 min ago", "in 2 hr", "now" (within 5 s). */
export function relativeTime(at: number, now: number = Date.now() / 1000, locale?: string): string {
  const diff = at - now;
  const abs = Math.abs(diff);
  if (abs < 5) return "now";
  const fmt = new Intl.RelativeTimeFormat(locale ?? "en", { numeric: "always", style: "short" });
  for (const [unit, seconds] of UNITS) {
    if (abs >= seconds || unit === "second") return fmt.format(Math.trunc(diff / seconds), unit);
  }
  return "now";
}

/** The date and time in the browser's timezone, e.g. "2026-12-03 05:33:14". */
export function absoluteTime(at: number, timeZone?: string): string {
  const d = new Date(at * 1000);
  const parts = new Intl.DateTimeFormat("en-CA", {
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
    hourCycle: "h23",
    ...(timeZone ? { timeZone } : {}),
  }).formatToParts(d);
  const get = (type: string) => parts.find((p) => p.type === type)?.value ?? "";
  return `${get("year")}-${get("month")}-${get("day")} ${get("hour")}:${get("minute")}:${get("second")}`;
}

/** A duration in seconds, compact: "840 ms", "12.3 s", "4m 05s", "3h 07m", "2d 04h". */
export function duration(seconds: number): string {
  if (!Number.isFinite(seconds)) return "–";
  const s = Math.max(0, seconds);
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 60) return `${s < 10 ? s.toFixed(1) : Math.round(s)} s`;
  const pad = (n: number) => String(n).padStart(2, "0");
  const total = Math.floor(s);
  if (total < 3600) return `${Math.floor(total / 60)}m ${pad(total % 60)}s`;
  if (total < 86400) return `${Math.floor(total / 3600)}h ${pad(Math.floor((total % 3600) / 60))}m`;
  return `${Math.floor(total / 86400)}d ${pad(Math.floor((total % 86400) / 3600))}h`;
}

/** 1234567 -> "1,234,567". */
export function count(n: number | null | undefined): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return "–";
  return Math.round(n).toLocaleString("en-US");
}

/** A rate per second: "0", "0.25", "12.5", "1,234". */
export function rate(n: number): string {
  if (!Number.isFinite(n) || n === 0) return "0";
  if (n < 1) return n.toFixed(2);
  if (n < 100) return n.toFixed(1).replace(/\.0$/, "");
  return count(n);
}

/** A JSON value pretty-printed (undefined and null both show as null). */
export function prettyJson(value: unknown): string {
  if (value === undefined) return "null";
  try {
    return JSON.stringify(value, null, 2) ?? "null";
  } catch {
    return String(value);
  }
}

/** A datetime-local input's value ("2026-12-03T05:33") as epoch seconds in the browser's timezone. */
export function localInputToEpoch(value: string): number | null {
  if (!value) return null;
  const t = new Date(value).getTime();
  return Number.isNaN(t) ? null : t / 1000;
}

/** Epoch seconds as a datetime-local input's value, in the browser's timezone. */
export function epochToLocalInput(at: number): string {
  const d = new Date(at * 1000);
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}
