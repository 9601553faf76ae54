// Compile-time tests of the public types, run by `npm run typetest` (tsc): it fails if a line
// marked as an expected error compiles (the type check did not catch it), or if any other line fails.
import { App, Busy, Client, job, JobError, JobId, JobNotFound, Permanent, RetryAfter, SpitfireError, WaitTimeout } from "../../src/index.js";
import type { Job, JobContext, JobPage, WorkerInfo } from "../../src/index.js";

const app = new App("tcp://127.0.0.1:7878");

const sendEmail = app.job("send_email", { queue: "emails", maxAttempts: 5 }, async (payload: { to: string; cc?: string[] }, ctx) => {
  const signal: AbortSignal = ctx.signal;
  const attempt: number = ctx.attempt;
  const headers: Readonly<Record<string, string>> = ctx.headers;
  void signal;
  void attempt;
  void headers;
  if (payload.to === "") throw new Permanent("no address");
  if (payload.to === "later") throw new RetryAfter(5_000);
  return { sent: true };
});

export async function checks(): Promise<void> {
  const id: JobId = await sendEmail.enqueue({ to: "a@b.c" });
  const created: boolean = id.created;
  const primitive: string = id.id;
  void created;
  void primitive;
  // @ts-expect-error: a JobId is a String object, not a primitive string: use id.id
  const notPrimitive: string = id;
  void notPrimitive;
  const result: unknown = await id.wait({ timeoutMs: 1000 });
  void result;
  await sendEmail.enqueue({ to: "a@b.c", cc: ["x@y.z"] }, { priority: 5, delayMs: 1000 });
  await sendEmail.enqueueMany([{ to: "x" }, { to: "y" }]);
  // @ts-expect-error: `to` must be a string
  await sendEmail.enqueue({ to: 42 });
  // @ts-expect-error: `to` is required
  await sendEmail.enqueue({});
  // @ts-expect-error: no such field
  await sendEmail.enqueue({ to: "a", bcc: "b" });
  // @ts-expect-error: a payload is required
  await sendEmail.enqueue();
  // @ts-expect-error: every element is checked
  await sendEmail.enqueueMany([{ to: "x" }, { to: 1 }]);
  // @ts-expect-error: an unknown enqueue option
  await sendEmail.enqueue({ to: "a" }, { delay: 10 });

  // A handler that takes a number: only numbers are accepted.
  const square = app.job("square", {}, (n: number) => n * n);
  await square.enqueue(3);
  // @ts-expect-error: a string is not a number
  await square.enqueue("3");

  // A schema's output type types the payload (zod-style parse).
  const schema = { parse: (v: unknown): { n: bigint } => v as { n: bigint } };
  const withSchema = app.job("schema", { schema }, (p) => p.n + 1n);
  await withSchema.enqueue({ n: 2n ** 60n });
  // @ts-expect-error: the schema says bigint
  await withSchema.enqueue({ n: "x" });

  // The ctx parameter is typed without an annotation.
  app.job("ctx", {}, (_p: null, ctx: JobContext) => {
    ctx.progress(0.5, "half");
    ctx.progress(null, "a message alone");
    ctx.progress(1);
    // @ts-expect-error: the value is a number
    ctx.progress("half");
    return ctx.id;
  });

  // TC39 standard decorators: the handle of a decorated method is typed by the method.
  class Emails {
    constructor(private readonly prefix: string) {}

    @job("emails.send", { queue: "emails" })
    async send(payload: { to: string }, ctx: JobContext): Promise<string> {
      return `${this.prefix}${payload.to}${ctx.id}`;
    }

    // @ts-expect-error: @job decorates methods, not fields
    @job("not-a-method")
    field = 1;
  }
  app.register(new Emails("> "));
  const send = app.jobFor(Emails.prototype.send);
  await send.enqueue({ to: "a@b.c" });
  // @ts-expect-error: `to` must be a string
  await send.enqueue({ to: 42 });

  const client = new Client(undefined, { authToken: "t" });
  const fetched: Job = await client.get(id);
  await client.get(id.id);
  await client.wait(id, { timeoutMs: null });
  // @ts-expect-error: durations are milliseconds, named so
  await client.wait(id, { timeout: 5 });
  try {
    await client.wait(id);
  } catch (err) {
    if (err instanceof JobError || err instanceof WaitTimeout) {
      const failed: Job = err.job;
      void failed;
    }
  }
  const page: JobPage = await client.listJobs({ queue: "q", states: ["dead", "cancelled"], limit: 10, newestFirst: false });
  await client.listJobs({ cursor: page.cursor });
  // @ts-expect-error: not a state
  await client.listJobs({ states: ["done"] });
  await client.purge("q", { states: "succeeded" });
  await client.setDurability("q", "group");
  // @ts-expect-error: not a durability mode
  await client.setDurability("q", "fast");
  const workers: WorkerInfo[] = await client.workers();
  void workers;
  const state: "scheduled" | "enqueued" | "reserved" | "running" | "succeeded" | "retrying" | "dead" | "cancelled" = fetched.state;
  void state;
  // @ts-expect-error: not a state
  const wrong: typeof fetched.state = "done";
  void wrong;
  try {
    await client.enqueue("q", "n", { any: ["msgpack", 1, null, new Uint8Array(1), 2n ** 64n - 1n] });
  } catch (err) {
    if (err instanceof Busy) {
      const ms: number | null = err.retryAfterMs;
      void ms;
    } else if (err instanceof JobNotFound) {
      const code: string = err.code;
      void code;
    } else if (err instanceof SpitfireError) {
      const field: string | null = err.field;
      void field;
    }
  }
  const worker = app.worker({ queues: ["emails"], concurrency: 10 });
  await worker.run();
  await client.close();
}
