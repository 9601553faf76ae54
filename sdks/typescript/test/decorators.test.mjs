// TC39 standard decorators: test/decorators/jobs.ts compiled by tsc (strict, no
// experimentalDecorators), then its classes registered with an App and run by a live worker.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { App, BadRequest, Client, JobFailed, SpitfireError } from "../dist/index.js";
import { REPO, run, startServer } from "./helpers.mjs";

const SDK = join(REPO, "sdks", "typescript");
const HERE = fileURLToPath(new URL("./decorators/", import.meta.url));

let server;
let client;
let jobs;
before(async () => {
  const tsc = await run(process.execPath, [join(SDK, "node_modules", "typescript", "bin", "tsc"), "-p", HERE], { ms: 120_000 });
  assert.equal(tsc.code, 0, tsc.stdout + tsc.stderr);
  jobs = await import(join(HERE, "dist", "jobs.js"));
  server = await startServer();
  client = new Client(server.url);
});
after(async () => {
  await client?.close();
  await server?.stop();
});

test("decorated methods run bound to the registered instance; static ones to the class", async () => {
  const app = new App(server.url);
  const mailer = new jobs.Mailer();
  const handles = app.register(new jobs.AuditedEmails(mailer));
  assert.deepEqual(handles.map((h) => [h.name, h.queue]).sort(), [
    ["emails.audit", "dec-emails"], ["emails.count", "dec-emails"], ["emails.send", "dec-emails"],
  ]);
  assert.deepEqual(app.register(jobs.Reports).map((h) => h.name), ["reports.build"]);
  const worker = app.worker({ handleSignals: false });
  const running = worker.run();
  try {
    const send = app.jobFor(jobs.Emails.prototype.send);
    assert.equal(send.name, "emails.send");
    const id = await send.enqueue({ to: "ada@example.com" });
    assert.deepEqual(await id.wait({ timeoutMs: 20_000 }), { sent: "ada@example.com", attempt: 1, by: "AuditedEmails" });
    assert.deepEqual(mailer.sent, ["ada@example.com"]);
    const job = await client.get(id);
    assert.equal(job.maxAttempts, 3); // the decorator's options
    await assert.rejects((await send.enqueue({ to: "nobody" })).wait({ timeoutMs: 20_000 }),
      (e) => e instanceof JobFailed && e.error === "Permanent: not an address: nobody");
    assert.equal(await (await app.jobFor(jobs.Emails.prototype.count).enqueue(null)).wait({ timeoutMs: 20_000 }), 1);
    assert.equal(await (await app.jobFor(jobs.AuditedEmails.prototype.audit).enqueue({ note: "ok" })).wait({ timeoutMs: 20_000 }), "1: ok");
    const report = await app.jobFor(jobs.Reports.build).enqueue({ id: 2n ** 60n });
    assert.deepEqual(await report.wait({ timeoutMs: 20_000 }), { id: 2n ** 60n, built: 1 });
    assert.equal((await client.get(report)).priority, 7);
  } finally {
    await worker.close();
    await running;
    await app.close();
  }
});

test("a producer enqueues through a decorated method without registering its class", async () => {
  const { app, send } = jobs.producer(server.url);
  try {
    const id = await send.enqueue({ to: "later@example.com" });
    const job = await client.get(id);
    assert.deepEqual([job.queue, job.name, job.payload], ["dec-emails", "emails.send", { to: "later@example.com" }]);
    assert.equal(app.jobFor(jobs.Emails.prototype.send), send); // one handle per method
    assert.deepEqual(app.jobNames, []); // not declared: this app's workers would not run it
  } finally {
    await app.close();
  }
});

test("registration errors say what to do", () => {
  const app = new App(server.url);
  const err = jobs.definePrivate();
  assert.ok(err instanceof TypeError && /private method #run/.test(err.message), String(err));
  assert.throws(() => app.register({}), (e) => e instanceof BadRequest && /no @job methods/.test(e.message));
  assert.throws(() => app.register(new (class Plain { run() {} })()), /a Plain has no @job methods/);
  assert.throws(() => app.jobFor(() => 1), (e) => e instanceof BadRequest && /not a @job-decorated method/.test(e.message));
  app.register(new jobs.Emails(new jobs.Mailer()));
  // The same names twice in one app: refused (a second instance would be a second handler).
  assert.throws(() => app.register(new jobs.Emails(new jobs.Mailer())), (e) => e instanceof SpitfireError && e.code === "CONFLICT");
});
