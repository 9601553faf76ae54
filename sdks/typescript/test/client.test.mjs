// Every Client method against a live spitfire-server.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { inspect } from "node:util";
import {
  BadRequest, Busy, Client, Conflict, JobCancelled, JobError, JobFailed, JobId, JobNotFound, NotConnected, QueueNotFound,
  ScheduleNotFound, SpitfireError, TooLarge, Unauthorized, WaitTimeout, InvalidURL,
} from "../dist/index.js";
import { startServer, waitFor } from "./helpers.mjs";

let server;
let client;
before(async () => {
  server = await startServer();
  client = new Client(server.url);
});
after(async () => {
  await client?.close();
  await server?.stop();
});

describe("client", () => {
  test("enqueue and get", async () => {
    const id = await client.enqueue("emails", "send_email", { to: "a@b.c" }, {
      priority: 5, delayMs: 10_000, maxAttempts: 3, idempotencyKey: "k-1", headers: { tag: "ñ" }, timeoutMs: 30_000,
      backoff: { kind: "fixed", baseMs: 2500 },
    });
    assert.match(id.id, /^[0-9a-f]{24}$/);
    assert.deepEqual([id.created, id.state], [true, "scheduled"]);
    const job = await client.get(id);
    assert.equal(job.id, id.id);
    assert.equal(job.queue, "emails");
    assert.equal(job.name, "send_email");
    assert.equal(job.state, "scheduled");
    assert.equal(job.priority, 5);
    assert.equal(job.maxAttempts, 3);
    assert.equal(job.timeoutMs, 30_000);
    assert.equal(job.idempotencyKey, "k-1");
    assert.deepEqual(job.headers, { tag: "ñ" });
    assert.deepEqual(job.payload, { to: "a@b.c" });
    assert.equal(job.backoff.kind, "fixed");
    assert.equal(job.backoff.baseMs, 2500);
    assert.ok(job.runAt instanceof Date && job.runAt.getTime() > Date.now() + 5000);
    // The same key returns the same job.
    const same = await client.enqueue("emails", "send_email", { to: "other" }, { idempotencyKey: "k-1" });
    assert.deepEqual([same.id, same.created, same.state], [id.id, false, "scheduled"]);
    const again = await client.enqueueDetailed("emails", "send_email", {}, { idempotencyKey: "k-1" });
    assert.deepEqual([again.id, again.created], [id.id, false]);
  });

  test("enqueue with runAt and a delays backoff", async () => {
    const at = new Date(Date.now() + 60_000);
    const id = await client.enqueue("emails", "x", null, { runAt: at, backoff: [1000, 5000, 30_000] });
    const job = await client.get(id);
    assert.ok(Math.abs(job.runAt.getTime() - at.getTime()) < 5);
    assert.deepEqual(job.backoff.delaysMs, [1000, 5000, 30_000]);
    assert.equal(job.payload, null);
  });

  test("enqueueMany is atomic", async () => {
    const ids = await client.enqueueMany("batch", "send_email", [{ to: "x" }, { to: "y" }], { idempotencyKeys: ["a", null] });
    assert.equal(ids.length, 2);
    assert.deepEqual((await client.get(ids[1])).payload, { to: "y" });
    // One bad option: nothing is added.
    const before = (await client.stats("batch")).queues[0].total;
    await assert.rejects(client.enqueueMany("batch", "send_email", [{}, {}], { priority: 11 }), BadRequest);
    assert.equal((await client.stats("batch")).queues[0].total, before);
  });

  test("cancel, retry, delete", async () => {
    const id = await client.enqueue("ops", "noop", {});
    assert.equal((await client.cancel(id)).state, "cancelled");
    await assert.rejects(client.cancel(id), Conflict);
    assert.equal((await client.retry(id)).state, "enqueued");
    assert.equal((await client.delete(id)).id, id.id);
    await assert.rejects(client.get(id), JobNotFound);
    await assert.rejects(client.get("nope"), (err) => err instanceof JobNotFound && err.code === "NOT_FOUND" && err instanceof SpitfireError);
  });

  test("stats, pause, resume, deleteQueue", async () => {
    await client.enqueue("statsq", "noop", {});
    const all = await client.stats();
    assert.ok(all.totalJobs >= 1);
    const one = await client.stats("statsq");
    assert.equal(one.queues.length, 1);
    assert.equal(one.queues[0].counts.enqueued, 1);
    await client.pause("statsq");
    assert.equal((await client.stats("statsq")).queues[0].paused, true);
    await client.resume("statsq");
    assert.equal((await client.stats("statsq")).queues[0].paused, false);
    await assert.rejects(client.pause("no-such-queue"), QueueNotFound);
    await assert.rejects(client.deleteQueue("statsq"), Conflict);
    await client.deleteQueue("statsq", { force: true });
    await assert.rejects(client.stats("statsq"), QueueNotFound);
  });

  test("bad arguments name the field", async () => {
    await assert.rejects(client.enqueue("emails", "x", {}, { priority: 11 }), (e) => e instanceof BadRequest && e.field === "priority");
    await assert.rejects(client.enqueue("bad queue!", "x", {}), (e) => e instanceof BadRequest && e.field === "queue");
    const big = new Uint8Array(2 * 1024 * 1024);
    await assert.rejects(client.enqueue("emails", "x", big), (e) => e instanceof TooLarge && e instanceof BadRequest);
  });

  test("a JobId is usable as the id string it holds", async () => {
    const id = await client.enqueue("ids", "noop", {});
    assert.ok(id instanceof JobId && id instanceof String);
    assert.equal(typeof id.id, "string");
    assert.equal(`${id}`, id.id);
    assert.equal(String(id), id.id);
    assert.ok(id == id.id); // loose equality compares the string it holds
    assert.equal(id.length, 24);
    assert.ok(id.startsWith(id.id.slice(0, 4)));
    assert.equal(JSON.stringify({ id }), JSON.stringify({ id: id.id }));
    assert.equal(inspect(id), id.id); // console.log prints the id
    // In a payload it travels as a string, as the Python SDK's JobId does.
    const ref = await client.enqueue("ids", "noop", { parent: id, ids: [id] });
    assert.deepEqual((await client.get(ref)).payload, { parent: id.id, ids: [id.id] });
    // Every method taking an id takes either.
    assert.equal((await client.get(id.id)).id, id.id);
    assert.equal((await client.cancel(id)).state, "cancelled");
    await assert.rejects(client.get(42), (e) => e instanceof BadRequest && e.field === "job_id");
    await assert.rejects(new JobId("x").wait(), /no client to wait with/);
  });

  test("wait: pushed on cancel (JobCancelled with the job), WaitTimeout with the job, deleted: JobNotFound", async () => {
    const id = await client.enqueue("waitq", "noop", {});
    const t = performance.now();
    await assert.rejects(client.wait(id, { timeoutMs: 300 }), (e) => e instanceof WaitTimeout && e.job.state === "enqueued" && e.job.id === id.id);
    assert.ok(performance.now() - t >= 290, "answered at the timeout");
    await assert.rejects(id.wait({ timeoutMs: 0 }), WaitTimeout); // 0: answered at once
    // No timeout: waits until the cancel is pushed.
    // The error caught at once: a rejection awaited later would be reported unhandled meanwhile.
    const waiting = id.wait().catch((e) => e);
    await client.cancel(id);
    const e = await waiting;
    assert.ok(e instanceof JobCancelled && e instanceof JobError && !(e instanceof JobFailed), String(e));
    assert.deepEqual([e.job.state, e.state, e.jobId, e.code], ["cancelled", "cancelled", id.id, "JOB_CANCELLED"]);
    // Final already: at once, the same way.
    await assert.rejects(client.wait(id, { timeoutMs: 5000 }), JobCancelled);
    const other = await client.enqueue("waitq", "noop", {});
    const deleted = client.wait(other, { timeoutMs: 20_000 }).catch((err) => err);
    await client.delete(other);
    assert.ok((await deleted) instanceof JobNotFound);
    await assert.rejects(client.wait("0".repeat(24), { timeoutMs: 1000 }), JobNotFound);
    for (const timeoutMs of [-1, Number.NaN, "1"]) {
      await assert.rejects(client.wait(id, { timeoutMs }), (e) => e instanceof BadRequest && e.field === "timeout");
    }
  });

  test("wait: past the server's 1,000 waiters per connection, Busy; nothing is held after", async () => {
    const c = new Client(server.url);
    try {
      const id = await c.enqueue("waitq", "later", {}, { delayMs: 3_600_000 });
      const results = await Promise.allSettled(Array.from({ length: 1001 }, () => c.wait(id, { timeoutMs: 1500 })));
      const busy = results.filter((r) => r.status === "rejected" && r.reason instanceof Busy);
      const timedOut = results.filter((r) => r.status === "rejected" && r.reason instanceof WaitTimeout);
      assert.equal(busy.length, 1);
      assert.equal(busy[0].reason.retryAfterMs, 1000);
      assert.equal(timedOut.length, 1000);
      // The waiters ended with their timeouts: a new one is accepted.
      await assert.rejects(c.wait(id, { timeoutMs: 10 }), WaitTimeout);
    } finally {
      await c.close();
    }
  });

  test("listJobs: filters and pages; bad input names the field", async () => {
    const ids = [];
    for (let i = 0; i < 5; i++) ids.push((await client.enqueue("adm-list", "noop", { i })).id);
    await client.cancel(ids[1]);
    await client.cancel(ids[3]);
    const seen = [];
    let cursor = null;
    for (let pages = 0; pages < 10; pages++) {
      const page = await client.listJobs({ queue: "adm-list", limit: 2, cursor });
      assert.ok(page.jobs.length <= 2);
      seen.push(...page.jobs.map((j) => j.id));
      cursor = page.cursor;
      if (cursor === null) break;
    }
    assert.deepEqual(seen, [...ids].reverse()); // newest first
    const oldest = await client.listJobs({ queue: "adm-list", newestFirst: false, limit: 1000 });
    assert.deepEqual(oldest.jobs.map((j) => j.id), ids);
    assert.deepEqual(oldest.jobs.map((j) => j.payload.i), [0, 1, 2, 3, 4]);
    const cancelled = await client.listJobs({ queue: "adm-list", states: ["cancelled"] });
    assert.deepEqual(cancelled.jobs.map((j) => j.id).sort(), [ids[1], ids[3]].sort());
    assert.equal((await client.listJobs({ queue: "adm-list", states: "enqueued" })).jobs.length, 3);
    assert.deepEqual((await client.listJobs({ queue: "no-such-queue" })).jobs, []);
    for (const limit of [0, 1001, 1.5, "5"]) {
      await assert.rejects(client.listJobs({ limit }), (e) => e instanceof BadRequest && e.field === "limit");
    }
    await assert.rejects(client.listJobs({ states: ["done"] }), (e) => e instanceof BadRequest && e.field === "states");
  });

  test("purge deletes the asked states only; setDurability is kept; bad input changes nothing", async () => {
    const ids = [];
    for (let i = 0; i < 4; i++) ids.push((await client.enqueue("adm-purge", "noop", {})).id);
    await client.cancel(ids[0]);
    await client.cancel(ids[2]);
    await assert.rejects(client.purge("adm-purge", { states: [] }), (e) => e instanceof BadRequest && e.field === "states");
    await assert.rejects(client.purge("adm-purge", { states: ["gone"] }), (e) => e instanceof BadRequest && e.field === "states");
    await assert.rejects(client.purge("adm-purge", {}), (e) => e instanceof BadRequest && e.field === "states");
    assert.equal((await client.stats("adm-purge")).queues[0].total, 4);
    assert.deepEqual(await client.purge("adm-purge", { states: ["cancelled", "dead"] }), { matched: 2, deleted: 2, failed: 0 });
    const left = (await client.listJobs({ queue: "adm-purge" })).jobs.map((j) => j.state);
    assert.deepEqual(left, ["enqueued", "enqueued"]);
    await assert.rejects(client.purge("no-such-queue", { states: "dead" }), QueueNotFound);

    await client.setDurability("adm-purge", "sync");
    assert.equal((await client.stats("adm-purge")).queues[0].durability, "sync");
    await client.setDurability("adm-new", "async"); // creates the queue
    assert.equal((await client.stats("adm-new")).queues[0].durability, "async");
    await assert.rejects(client.setDurability("adm-purge", "fast"), (e) => e instanceof BadRequest && e.field === "durability");
    assert.equal((await client.stats("adm-purge")).queues[0].durability, "sync");
  });

  test("schedules", async () => {
    const s = await client.schedules.add({ name: "nightly", cron: "0 3 * * *", timezone: "Europe/Berlin", queue: "reports",
      job: "build_report", payload: { kind: "daily" }, options: { priority: 5, maxAttempts: 3 }, misfire: "once" });
    assert.equal(s.name, "nightly");
    assert.equal(s.timezone, "Europe/Berlin");
    assert.deepEqual(s.payload, { kind: "daily" });
    assert.equal(s.options.priority, 5);
    assert.ok(s.nextRunAt instanceof Date);
    // Identical: answered as is; different without replace: Conflict; put replaces.
    await client.schedules.add({ name: "nightly", cron: "0 3 * * *", timezone: "Europe/Berlin", queue: "reports",
      job: "build_report", payload: { kind: "daily" }, options: { priority: 5, maxAttempts: 3 }, misfire: "once" });
    await assert.rejects(client.schedules.add({ name: "nightly", cron: "0 4 * * *", queue: "reports", job: "build_report" }), Conflict);
    const put = await client.schedules.put({ name: "nightly", cron: "0 4 * * *", queue: "reports", job: "build_report" });
    assert.equal(put.created, false);
    assert.equal(put.schedule.cron, "0 4 * * *");
    assert.deepEqual((await client.schedules.list()).map((x) => x.name), ["nightly"]);
    assert.equal((await client.schedules.pause("nightly")).paused, true);
    assert.equal((await client.schedules.get("nightly")).nextRunAt, null);
    assert.equal((await client.schedules.resume("nightly")).paused, false);
    const jobId = await client.schedules.trigger("nightly");
    const job = await client.get(jobId);
    assert.equal(job.headers["spitfire-schedule"], "nightly");
    assert.equal((await client.schedules.delete("nightly")).name, "nightly");
    await assert.rejects(client.schedules.get("nightly"), ScheduleNotFound);
    await assert.rejects(client.schedules.add({ name: "bad", cron: "every day", queue: "q", job: "j" }), (e) => e instanceof BadRequest && e.field === "cron");
  });

  test("pipelining: 500 requests in flight on one connection", async () => {
    const ids = await Promise.all(Array.from({ length: 500 }, (_, i) => client.enqueue("pipe", "noop", { i })));
    assert.equal(new Set(ids.map((id) => id.id)).size, 500);
    const jobs = await Promise.all(ids.map((id) => client.get(id)));
    assert.deepEqual(jobs.map((j) => j.payload.i), Array.from({ length: 500 }, (_, i) => i));
  });

  test("ping", async () => {
    assert.ok((await client.ping()) >= 0);
  });

  test("typed errors are instanceof-checkable", () => {
    const busy = new Busy("full", { retryAfterMs: 500 });
    assert.ok(busy instanceof Busy && busy instanceof SpitfireError && busy instanceof Error);
    assert.equal(busy.retryAfterMs, 500);
    assert.equal(busy.code, "BUSY");
    assert.equal(busy.name, "Busy");
    assert.throws(() => new Client("http://x"), InvalidURL);
    assert.throws(() => new Client("quic://127.0.0.1:7878"), /TCP only/);
  });
});

describe("connections", () => {
  test("an auth token: missing is Unauthorized, right connects", async () => {
    const secured = await startServer(["--auth-token", "s3cr3t"]);
    try {
      const bad = new Client(secured.url, { authToken: "wrong" });
      await assert.rejects(bad.ping(), Unauthorized);
      await bad.close();
      const good = new Client(secured.url, { authToken: "s3cr3t" });
      await good.ping();
      await good.close();
    } finally {
      await secured.stop();
    }
  });

  test("nobody listening: NotConnected after the connect timeout", async () => {
    const c = new Client("tcp://127.0.0.1:1", { connectTimeoutMs: 300 });
    const t = Date.now();
    await assert.rejects(c.ping(), NotConnected);
    assert.ok(Date.now() - t < 3000);
    await c.close();
  });

  test("reconnects after the server restarts", async () => {
    const s = await startServer();
    const port = new URL(s.url.replace("tcp:", "http:")).port;
    const c = new Client(s.url, { connectTimeoutMs: 15_000 });
    const id = await c.enqueue("r", "noop", {});
    await s.stop();
    // A new server (fresh data dir) on the same port: the job is unknown there, so an answer of
    // NOT_FOUND proves the client re-dialled. (--listen given twice: the last one wins.)
    const s2 = await startServer(["--listen", `127.0.0.1:${port}`]);
    try {
      await assert.rejects(c.get(id), JobNotFound);
    } finally {
      await c.close();
      await s2.stop();
    }
  });

  test("wait survives a server SIGKILL and restart: WAIT is resent, the outcome still arrives", async () => {
    const s = await startServer();
    const port = new URL(s.url.replace("tcp:", "http:")).port;
    const waiters = async (srv) => {
      try {
        return (await (await fetch(`${srv.http}/metrics`)).text()).includes("spitfire_waiters 1");
      } catch {
        return false;
      }
    };
    const c = new Client(s.url, { connectTimeoutMs: 30_000 });
    let restarted;
    try {
      const id = await c.enqueue("r", "later", {}, { delayMs: 3_600_000 });
      const outcome = c.wait(id, { timeoutMs: 60_000 }).then(() => "resolved", (e) => e);
      await waitFor(() => waiters(s), "the server to hold the waiter");
      await s.kill(); // no GOAWAY: the waiter's connection just drops
      restarted = await startServer(["--listen", `127.0.0.1:${port}`], { dataDir: s.dataDir });
      await waitFor(() => waiters(restarted), "the waiter to come back");
      const other = new Client(restarted.url);
      await other.cancel(id);
      await other.close();
      const err = await outcome;
      assert.ok(err instanceof JobCancelled, String(err));
    } finally {
      await c.close();
      await restarted?.stop();
      await s.stop(); // removes the data directory both used
    }
  });

  test("request timeouts", async () => {
    const c = new Client(server.url, { timeoutMs: 1 });
    // 1 ms is too short for an fsynced enqueue of 200 jobs at least sometimes; accept either.
    const results = await Promise.allSettled(Array.from({ length: 200 }, () => c.enqueue("t", "noop", {})));
    for (const r of results) if (r.status === "rejected") assert.equal(r.reason.code, "TIMEOUT");
    await c.close();
  });
});

