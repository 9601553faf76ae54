// A cron expression in words, for the common shapes ("every day at 03:00", "every 15 minutes",
// "Mon–Fri at 09:30"). Anything else answers null and the page shows the expression alone: a wrong
// description is worse than none. Five fields, or six with seconds last (croniter's convention,
// docs/schedules.md), and the @hourly-style aliases.

const ALIASES: Record<string, string> = {
  "@yearly": "every year on 1 January at 00:00",
  "@annually": "every year on 1 January at 00:00",
  "@monthly": "on day 1 of every month at 00:00",
  "@weekly": "every Sunday at 00:00",
  "@daily": "every day at 00:00",
  "@midnight": "every day at 00:00",
  "@hourly": "every hour at minute 0",
};

const DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];
const DAY_NAMES: Record<string, number> = { sun: 0, mon: 1, tue: 2, wed: 3, thu: 4, fri: 5, sat: 6 };

const num = (s: string, max: number): number | null => (/^\d+$/.test(s) && Number(s) <= max ? Number(s) : null);
const two = (n: number) => String(n).padStart(2, "0");

function dayOfWeek(s: string): number | null {
  const named = DAY_NAMES[s.toLowerCase()];
  if (named !== undefined) return named;
  const n = num(s, 7);
  return n === null ? null : n % 7;
}

/** "Monday", "Monday and Friday", "Mon–Fri", or null for shapes not described. */
function days(field: string): string | null {
  const range = field.split("-");
  if (range.length === 2) {
    const [a, b] = [dayOfWeek(range[0] ?? ""), dayOfWeek(range[1] ?? "")];
    if (a === null || b === null || a >= b) return null;
    if (a === 1 && b === 5) return "Monday to Friday";
    return `${DAYS[a]} to ${DAYS[b]}`;
  }
  const list = field.split(",").map(dayOfWeek);
  if (list.some((d) => d === null)) return null;
  const names = list.map((d) => DAYS[d ?? 0] ?? "");
  return names.length === 1 ? `every ${names[0]}` : `every ${names.slice(0, -1).join(", ")} and ${names[names.length - 1]}`;
}

export function describeCron(expression: string): string | null {
  const expr = expression.trim().replace(/\s+/g, " ");
  const alias = ALIASES[expr.toLowerCase()];
  if (alias) return alias;
  const fields = expr.split(" ");
  if (fields.length === 6) {
    if (fields[5] !== "0") return null; // seconds other than 0: say nothing rather than something wrong
    fields.pop();
  }
  if (fields.length !== 5) return null;
  const [min = "", hour = "", dom = "", month = "", dow = ""] = fields;
  if (month !== "*") return null;
  const every = /^\*\/(\d+)$/;
  if (hour === "*" && dom === "*" && dow === "*") {
    if (min === "*") return "every minute";
    const step = every.exec(min);
    if (step) return `every ${step[1]} minutes`;
    const m = num(min, 59);
    return m === null ? null : `every hour at minute ${m}`;
  }
  const m = num(min, 59);
  if (m === null) return null;
  const hourStep = every.exec(hour);
  if (hourStep && dom === "*" && dow === "*") return `every ${hourStep[1]} hours at minute ${m}`;
  const hours = hour.split(",").map((h) => num(h, 23));
  if (hours.some((h) => h === null)) return null;
  const at = `at ${hours.map((h) => `${two(h ?? 0)}:${two(m)}`).join(", ")}`;
  if (dom === "*" && dow === "*") return `every day ${at}`;
  if (dom === "*") {
    const d = days(dow);
    return d === null ? null : `${d} ${at}`;
  }
  const day = num(dom, 31);
  if (day !== null && day >= 1 && dow === "*") return `on day ${day} of every month ${at}`;
  return null;
}
