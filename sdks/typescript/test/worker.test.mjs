// The Worker against a live server: outcomes, context, cancellation, heartbeats, shutdown.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { MessageType } from "../dist/codec.js";
import { App, Client, JobFailed, Permanent, PROGRESS_INTERVAL_MS, RetryAfter } from "../dist/index.js";
import { sleep, startServer, waitFor, waitState } from "./helpers.mjs";

/** Records the CREDIT frames a worker's connection sends (white-box: the connection is private). */
async function spyCredits(worker) {
  await waitFor(() => worker.workerId !== null, "the worker to subscribe");
  const conn = worker["conn"];
  const credits = [];
  const send = conn.send.bind(conn);
  conn.send = (type, body) => {
    if (type === MessageType.CREDIT) credits.push(body.credits);
    send(type, body);
  };
  return credits;
}

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

/** Runs `fn(app)` with a worker started on the app; closes both afterwards. */
async function withWorker(app, options, fn) {
  const worker = app.worker({ handleSignals: false, ...options });
  const running = worker.run();
  try {
    await fn(worker);
  } finally {
    await worker.close();
    await running;
    await app.close();
  }
}

describe("worker", () => {
  test("success: the result is kept; ctx carries id, attempt, headers", async () => {
    const app = new App(server.url);
    const seen = [];
    const add = app.job("add", { queue: "w-add" }, async (p, ctx) => {
      seen.push({ id: ctx.id, attempt: ctx.attempt, headers: ctx.headers, queue: ctx.queue, name: ctx.name });
      return { sum: p.a + p.b };
    });
    await withWorker(app, {}, async () => {
      const id = await add.enqueue({ a: 2, b: 3 }, { headers: { trace: "t-1" } });
      assert.deepEqual(await id.wait({ timeoutMs: 20_000 }), { sum: 5 });
      assert.deepEqual(await client.wait(id, { timeoutMs: 20_000 }), { sum: 5 });
      assert.deepEqual(seen, [{ id: id.id, attempt: 1, headers: { trace: "t-1" }, queue: "w-add", name: "add" }]);
    });
  });

  test("Permanent: dead at once; a plain error is retried; RetryAfter is not counted", async () => {
    const app = new App(server.url);
    const attempts = new Map();
    const perm = app.job("perm", { queue: "w-out" }, () => {
      throw new Permanent("unknown user");
    });
    const flaky = app.job("flaky", { queue: "w-out", backoff: { kind: "fixed", baseMs: 50 } }, (_p, ctx) => {
      if (ctx.attempt < 2) throw new TypeError("boom");
      return "ok";
    });
    const snooze = app.job("snooze", { queue: "w-out" }, (_p, ctx) => {
      const n = (attempts.get(ctx.id) ?? 0) + 1;
      attempts.set(ctx.id, n);
      if (n === 1) throw new RetryAfter(100);
      return { attempt: ctx.attempt, runs: n };
    });
    await withWorker(app, {}, async () => {
      const [p, f, s] = await Promise.all([perm.enqueue({}), flaky.enqueue({}), snooze.enqueue({})]);
      await assert.rejects(client.wait(p, { timeoutMs: 20_000 }), (e) => e instanceof JobFailed && e.state === "dead" &&
        e.error === "Permanent: unknown user" && e.job.id === p.id && /Permanent: unknown user/.test(e.job.errors[0].traceback));
      const pj = await client.get(p);
      assert.equal(pj.attempts, 1);
      assert.match(pj.errors[0].traceback, /Permanent: unknown user/);
      assert.equal(await client.wait(f, { timeoutMs: 20_000 }), "ok");
      const fj = await client.get(f);
      assert.equal(fj.attempts, 2);
      assert.equal(fj.errors[0].error, "TypeError: boom");
      assert.deepEqual(await client.wait(s, { timeoutMs: 20_000 }), { attempt: 1, runs: 2 });
      const sj = await client.get(s);
      assert.equal(sj.attempts, 1);
      assert.deepEqual(sj.errors, []);
    });
  });

  test("an unknown handler and an invalid payload fail with clear errors", async () => {
    const app = new App(server.url);
    app.job("typed", { queue: "w-unk", schema: { parse: (v) => { if (typeof v?.n !== "number") throw new Error("n must be a number"); return v; } } }, () => 1);
    await withWorker(app, {}, async () => {
      const u = await client.enqueue("w-unk", "nobody", {}); // 25 attempts: dead at once all the same
      await assert.rejects(client.wait(u, { timeoutMs: 20_000 }), (e) => e instanceof JobFailed && /no job named "nobody"/.test(e.error));
      assert.equal((await client.get(u)).attempts, 1);
      const bad = await client.enqueue("w-unk", "typed", { n: "x" });
      await assert.rejects(client.wait(bad, { timeoutMs: 20_000 }), (e) => e instanceof JobFailed && /JobArgumentError.*n must be a number/.test(e.error));
      assert.equal((await client.get(bad)).attempts, 1);
    });
  });

  test("cancellation aborts ctx.signal of a running job", async () => {
    const app = new App(server.url);
    let started = false;
    let aborted = false;
    const slow = app.job("slow", { queue: "w-cancel" }, (_p, ctx) => new Promise((resolve) => {
      started = true;
      ctx.signal.addEventListener("abort", () => {
        aborted = true;
        resolve();
      });
    }));
    await withWorker(app, {}, async () => {
      const id = await slow.enqueue({});
      await waitFor(() => started, "the job to start");
      await client.cancel(id);
      await waitFor(() => aborted, "ctx.signal to abort");
      assert.equal((await client.get(id)).state, "cancelled");
    });
  });

  test("concurrency bounds the running handlers; heartbeats keep short leases", async () => {
    const app = new App(server.url);
    let now = 0;
    let peak = 0;
    const job = app.job("busy", { queue: "w-conc", timeoutMs: 600 }, async () => {
      peak = Math.max(peak, ++now);
      await sleep(400);
      now--;
    });
    const longOne = app.job("long", { queue: "w-conc", timeoutMs: 600, maxAttempts: 1 }, async () => {
      await sleep(1500); // past its 600 ms lease: only heartbeats keep it
      return "survived";
    });
    await withWorker(app, { concurrency: 3 }, async () => {
      const ids = await job.enqueueMany(Array.from({ length: 9 }, () => ({})));
      const l = await longOne.enqueue({});
      for (const id of ids) await waitState(client, id, ["succeeded"]);
      assert.equal(await client.wait(l, { timeoutMs: 20_000 }), "survived");
      assert.ok(peak <= 3, `peak ${peak}`);
      assert.ok(peak >= 2, `peak ${peak}`);
    });
  });

  test("progress: coalesced (at most 4 a second per job, the latest wins), visible, dropped once final", async () => {
    const app = new App(server.url);
    let release;
    const released = new Promise((r) => (release = r));
    const refused = [];
    const resize = app.job("resize", { queue: "w-progress" }, async (n, ctx) => {
      for (let i = 0; i < n; i++) ctx.progress((i + 1) / n, `resized ${i + 1} of ${n}`);
      for (const [v, m] of [[1.5, null], [-0.1, null], [Number.NaN, null], ["half", null], [null, "x".repeat(1001)], [null, 7]]) {
        try {
          ctx.progress(v, m);
        } catch (err) {
          refused.push(err.constructor.name);
        }
      }
      ctx.progress(null, "🚀".repeat(1000)); // 1,000 characters (2,000 UTF-16 units): accepted
      ctx.progress(1, `resized ${n} of ${n}`);
      await released;
      return "done";
    });
    const slow = app.job("slow", { queue: "w-progress" }, async (n, ctx) => {
      for (let i = 0; i < n; i++) {
        ctx.progress(i / n);
        await sleep(10);
      }
    });
    await withWorker(app, {}, async (worker) => {
      const id = await resize.enqueue(10_000);
      const job = await waitFor(async () => {
        const j = await client.get(id);
        return j.progress?.value === 1 && j.progress.message === "resized 10000 of 10000" ? j : null;
      }, "the last progress report");
      assert.ok(job.progress.at instanceof Date);
      assert.deepEqual(refused, ["RangeError", "RangeError", "RangeError", "TypeError", "RangeError", "TypeError"]);
      release();
      assert.equal(await id.wait({ timeoutMs: 30_000 }), "done");
      assert.equal((await client.get(id)).progress, null); // final: dropped

      // Count what goes on the wire.
      const conn = worker["conn"];
      const sent = [];
      const send = conn.send.bind(conn);
      conn.send = (type, body) => {
        if (type === MessageType.PROGRESS) sent.push(body);
        send(type, body);
      };
      const t = performance.now();
      await (await slow.enqueue(100)).wait({ timeoutMs: 30_000 });
      const elapsed = performance.now() - t;
      assert.ok(sent.length >= 1 && sent.length <= elapsed / PROGRESS_INTERVAL_MS + 2, `${sent.length} reports in ${elapsed} ms`);
      assert.equal(sent[0].value, 0); // the first goes at once
    });
  });

  test("workers(): a running worker is listed with what it said", async () => {
    const app = new App(server.url);
    app.job("listed", { queue: "w-listed" }, () => null);
    await withWorker(app, { concurrency: 3, name: "ts-worker-1" }, async (worker) => {
      const w = await waitFor(async () => (await client.workers()).find((x) => x.id === worker.workerId), "the worker to be listed");
      assert.equal(w.name, "ts-worker-1");
      assert.deepEqual(w.queues, ["w-listed"]);
      assert.equal(w.concurrency, 3);
      assert.equal(w.pid, process.pid);
      assert.equal(w.active, true);
      assert.ok(w.connectedAt instanceof Date && w.lastSeen instanceof Date);
    });
    await waitFor(async () => !(await client.workers()).some((x) => x.name === "ts-worker-1"), "the closed worker to go");
  });

  test("close() while the worker is still connecting: it never subscribes, nothing stays open", async () => {
    const app = new App(server.url);
    app.job("never", { queue: "w-early" }, () => null);
    const worker = app.worker({ handleSignals: false, name: "ts-early-close" });
    const running = worker.run();
    await worker.close(); // before the connection is open
    await running;
    assert.equal(worker["conn"], null);
    await sleep(300); // the connection being opened then is closed, not subscribed
    assert.equal(worker.workerId, null);
    assert.ok(!(await client.workers()).some((w) => w.name === "ts-early-close"));
    const id = await client.enqueue("w-early", "never", {});
    await sleep(200);
    assert.equal((await client.get(id)).state, "enqueued"); // nobody took it
    await client.cancel(id);
    await app.close();
  });

  test("a job delivered again while it runs (lease expired): the old run is aborted, each gives its credit back", async () => {
    const app = new App(server.url);
    const calls = [];
    let release;
    const released = new Promise((r) => (release = r));
    const job = app.job("twice", { queue: "w-twice" }, async (_p, ctx) => {
      calls.push(ctx.signal);
      if (calls.length === 1) await Promise.race([released, new Promise((r) => ctx.signal.addEventListener("abort", r))]);
      return calls.length;
    });
    await withWorker(app, { concurrency: 1, prefetch: 0 }, async (worker) => {
      const credits = await spyCredits(worker);
      const id = await job.enqueue({});
      await waitFor(() => calls.length === 1, "the first run");
      // What the server sends when the lease expired and it hands the job out again.
      const j = await client.get(id);
      worker["onPush"](MessageType.DELIVER, { jobs: [{ job_id: id.id, queue: j.queue, name: j.name, payload: j.rawPayload,
        attempt: 2, max_attempts: j.maxAttempts, timeout: 60, headers: null, created_at: 0, priority: 0 }] });
      assert.equal(calls[0].aborted, true);
      assert.equal(calls[0].reason.code, "LEASE_EXPIRED");
      await waitFor(() => calls.length === 2, "the second run");
      assert.equal(await id.wait({ timeoutMs: 20_000 }), 2); // the second run's outcome counts
      release();
      await waitFor(() => credits.reduce((a, b) => a + b, 0) === 2, "a credit back for each run");
      assert.equal(worker["superseded"].size, 0);
    });
  });

  test("after a server SIGKILL and restart, a job still running then gives its credit back on the new connection", async () => {
    const own = await startServer();
    const port = new URL(own.url.replace("tcp:", "http:")).port;
    const app = new App(own.url, { connectTimeoutMs: 30_000 });
    let aborted = false;
    let release;
    const released = new Promise((r) => (release = r));
    const hold = app.job("hold", { queue: "w-restart" }, async (_p, ctx) => {
      ctx.signal.addEventListener("abort", () => (aborted = true));
      await released; // ignores the abort for a while, as handlers may
      return "held";
    });
    const quick = app.job("quick", { queue: "w-restart" }, () => "quick");
    // One slot and no prefetch: a credit lost would leave the worker without any.
    const worker = app.worker({ handleSignals: false, concurrency: 1, prefetch: 0, onError: () => {} });
    const running = worker.run();
    let restarted;
    try {
      const c1 = new Client(own.url);
      const h = await hold.enqueue({});
      await waitState(c1, h, ["running"]);
      await c1.close();
      await own.kill();
      restarted = await startServer(["--listen", `127.0.0.1:${port}`], { dataDir: own.dataDir });
      const c2 = new Client(restarted.url);
      try {
        // Subscribed again, with no credit to spare: the held job's room was deducted.
        await waitFor(async () => (await c2.workers()).length === 1, "the worker to subscribe again");
        // It resumed its id (no live connection holds it): the run goes on rather than being
        // aborted, though a restarted single node holds no lease for it any more.
        assert.equal((await c2.workers())[0].id, worker.workerId);
        assert.equal(aborted, false);
        release();
        const q = await quick.enqueue({}, { priority: 10 });
        assert.equal(await c2.wait(q, { timeoutMs: 20_000 }), "quick");
      } finally {
        await c2.close();
      }
    } finally {
      await worker.close(0);
      await running;
      await app.close();
      await restarted?.stop();
      await own.stop();
    }
  });

  test("graceful close: finishes in-flight jobs within the grace, releases the rest", async () => {
    const app = new App(server.url);
    const quick = app.job("quick", { queue: "w-grace" }, async () => {
      await sleep(200);
      return "done";
    });
    const stuck = app.job("stuck", { queue: "w-grace" }, (_p, ctx) => new Promise((resolve) => ctx.signal.addEventListener("abort", resolve)));
    const worker = app.worker({ handleSignals: false, concurrency: 2, prefetch: 5 });
    const running = worker.run();
    const q = await quick.enqueue({});
    const s = await stuck.enqueue({});
    await waitState(client, s, ["running"]);
    const extra = await quick.enqueueMany([{}, {}, {}]);
    await sleep(100);
    await worker.close(800);
    await running;
    await app.close();
    assert.equal((await client.get(q)).state, "succeeded");
    const sj = await client.get(s);
    assert.equal(sj.state, "enqueued"); // released: handed back without counting an attempt
    assert.equal(sj.attempts, 0);
    for (const id of extra) assert.ok(["enqueued", "succeeded"].includes((await client.get(id)).state));
  });
});
