import { describe, expect, it } from "vitest";
import { describeCron } from "./cron";

describe("describeCron", () => {
  it.each([
    ["* * * * *", "every minute"],
    ["*/15 * * * *", "every 15 minutes"],
    ["5 * * * *", "every hour at minute 5"],
    ["0 3 * * *", "every day at 03:00"],
    ["30 9 * * 1-5", "Monday to Friday at 09:30"],
    ["0 18 * * sat-sun", null],
    ["0 8 * * 1,5", "every Monday and Friday at 08:00"],
    ["0 0 * * 0", "every Sunday at 00:00"],
    ["0 0 * * 7", "every Sunday at 00:00"],
    ["0 9,17 * * *", "every day at 09:00, 17:00"],
    ["15 */6 * * *", "every 6 hours at minute 15"],
    ["0 4 1 * *", "on day 1 of every month at 04:00"],
    ["0 3 * * * 0", "every day at 03:00"],
    ["0 3 * * * 30", null],
    ["@hourly", "every hour at minute 0"],
    ["@DAILY", "every day at 00:00"],
    ["0 3 * 1 *", null],
    ["0 3 1 * 1", null],
    ["61 * * * *", null],
    ["0 24 * * *", null],
    ["nonsense", null],
  ])("%s -> %s", (expr, words) => {
    expect(describeCron(expr)).toBe(words);
  });
});
