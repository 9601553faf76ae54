// The jobs of this example, declared once: the producer enqueues them (payloads type-checked
// against the handlers'), the worker runs them.
import { App, Permanent, RetryAfter } from "@spitfirehq/sdk";

export const app = new App(); // SPITFIRE_URL, else tcp://127.0.0.1:7878

const rateLimited = new Set<string>();

export const sendEmail = app.job(
  "send_email",
  { queue: "emails", maxAttempts: 5, backoff: { kind: "exponential", baseMs: 500 } },
  async (payload: { to: string; subject?: string }, ctx) => {
    if (!payload.to.includes("@")) throw new Permanent(`not an address: ${payload.to}`); // dead at once
    if (payload.to.startsWith("slow") && !rateLimited.has(ctx.id)) {
      rateLimited.add(ctx.id);
      throw new RetryAfter(200); // again in 200 ms, not counted as an attempt
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
    ctx.signal.throwIfAborted(); // cancelled meanwhile: stop
    return { sent: payload.to, attempt: ctx.attempt };
  },
);

export const buildReport = app.job("build_report", { queue: "reports" }, (payload: { reportId: bigint }) => {
  return { reportId: payload.reportId, rows: 3 };
});
