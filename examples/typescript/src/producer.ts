// Enqueues a few jobs and prints what became of them. Run the worker first (or after: jobs wait).
import { Client, JobError } from "@spitfirehq/sdk";

import { app, buildReport, sendEmail } from "./tasks.js";

const ids = [
  await sendEmail.enqueue({ to: "ada@example.com", subject: "Welcome" }),
  await sendEmail.enqueue({ to: "slow@example.com" }, { idempotencyKey: "welcome-slow" }),
  await sendEmail.enqueue({ to: "not-an-address" }), // ends dead: the handler throws Permanent
  await buildReport.enqueue({ reportId: 2n ** 60n }, { priority: 9 }), // a bigint past 2^53, intact
];
// sendEmail.enqueue({ to: 42 }) would not compile: the payload is checked against the handler's type.

/** JSON with bigints written as 123n. */
const show = (v: unknown): string => JSON.stringify(v, (_k, x: unknown) => (typeof x === "bigint" ? `${x}n` : x));

for (const id of ids) {
  try {
    const result = await id.wait({ timeoutMs: 20_000 }); // pushed by the server once it is durable
    console.log(`${id} succeeded: ${show(result)}`);
  } catch (err) {
    if (!(err instanceof JobError)) throw err; // JobFailed (dead) or JobCancelled; WaitTimeout: still running
    console.log(`${id} ${err.state}: ${err.error}`);
  }
}

const client = new Client(); // the plain client: any queue, any handler name
const stats = await client.stats();
console.log(`queues: ${stats.queues.map((q) => `${q.name}=${q.total}`).join(", ")}`);
await client.close();
await app.close();
