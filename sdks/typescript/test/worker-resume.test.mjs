// A TypeScript worker resumes its worker id on a cluster's new leader (SUBSCRIBE `resume`): the jobs
// it was running when the leader was SIGKILLed stay its own there (shown running), finish and are
// acknowledged once (each `succeeded` after one attempt, run once), an ACK the kill cut is sent
// again and lands, and a buffered job is handed back and runs once. When a live connection holds
// the id, the resume is refused: the worker aborts the old runs and nothing is lost (the jobs run
// again). Every handler waits on a gate the test opens; every wait polls, bounded in time.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { App, Client } from "../dist/index.js";
import { MessageType } from "../dist/codec.js";
import { Connection } from "../dist/connection.js";
import { startCluster } from "./clusterhelpers.mjs";
import { waitFor, WAIT_MS } from "./helpers.mjs";

describe("a worker resuming on a cluster's new leader", { timeout: 300_000 }, () => {
  let cluster;
  before(async () => {
    cluster = await startCluster();
    await cluster.leader();
  });
  after(async () => {
    await cluster?.close();
  });

  test("running jobs ack once, a cut ACK is sent again, a buffered job is handed back", async () => {
    const queue = "ts-resume";
    const client = new Client(cluster.url, { connectTimeoutMs: WAIT_MS });
    const app = new App(cluster.url, { connectTimeoutMs: WAIT_MS });
    const started = new Map(); // job id -> runs
    const order = [];
    const finished = new Set();
    const gates = new Map(); // job id -> open()
    let openAll;
    const all = new Promise((r) => (openAll = r));
    const gate = (id) => {
      if (!gates.has(id)) {
        let open;
        const p = new Promise((r) => (open = r));
        gates.set(id, { open, p });
      }
      return gates.get(id);
    };
    const runningNow = () => order.filter((id) => !finished.has(id));
    const slow = app.job("slow", { queue, timeoutMs: 30_000 }, async ({ n }, ctx) => {
      started.set(ctx.id, (started.get(ctx.id) ?? 0) + 1);
      order.push(ctx.id);
      await Promise.race([gate(ctx.id).p, all]);
      finished.add(ctx.id);
      return n;
    });
    const ids = [];
    for (let n = 0; n < 5; n++) ids.push((await slow.enqueue({ n })).id);
    const errors = [];
    // 3 run, 2 wait in the buffer.
    const worker = app.worker({ queues: [queue], concurrency: 3, prefetch: 2, handleSignals: false, onError: (e) => errors.push(e) });
    const running = worker.run();
    try {
      await waitFor(() => runningNow().length === 3, "three jobs to run");
      const wid = worker.workerId;
      const held = async () => (await client.workers()).find((w) => w.id === wid)?.held ?? 0;
      await waitFor(async () => (await held()) === 5, "the worker to hold all five");
      // Acknowledged after the deliveries' lease records (one log, committed in order): the next
      // leader holds those leases.
      await client.enqueue("ts-marker", "job", null);

      const [old] = await cluster.stopLeader();
      let cut;
      try {
        // A job finishes while the leader answers nothing: its ACK is sent and never answered.
        cut = runningNow()[0];
        gate(cut).open();
        await waitFor(() => finished.has(cut) && worker.acks.length === 0, "the cut job's ACK to be sent");
        // Its slot runs the first buffered job; one stays buffered.
        await waitFor(() => runningNow().length === 3, "a buffered job to start");
      } finally {
        await cluster.kill(old);
      }
      await cluster.restart(old); // a majority again for the next test's kill

      await waitFor(async () => (await held()) >= 3 && worker.workerId === wid, "the worker to resume its id");
      await waitFor(async () => (await client.get(cut)).state === "succeeded", "the cut ACK to land");
      const kept = runningNow();
      await waitFor(async () => {
        for (const id of kept) if ((await client.get(id)).state !== "running") return false;
        return true;
      }, "the kept jobs to show running");
      openAll();
      await waitFor(async () => {
        for (const id of ids) if ((await client.get(id)).state !== "succeeded") return false;
        return true;
      }, "every job to succeed");
      const jobs = await Promise.all(ids.map((id) => client.get(id)));
      assert.deepEqual(jobs.map((j) => j.attempts), [1, 1, 1, 1, 1]);
      assert.deepEqual(jobs.map((j) => j.result), [0, 1, 2, 3, 4]);
      // Each job ran once here: none was delivered twice to a handler.
      assert.deepEqual([...started.values()], [1, 1, 1, 1, 1]);
      assert.deepEqual(new Set(started.keys()), new Set(ids));
      assert.equal(worker.workerId, wid);
    } finally {
      openAll();
      await worker.close();
      await running;
      await client.close();
    }
  });

  test("a refused resume (a live connection holds the id) loses nothing", async () => {
    const queue = "ts-refused";
    const client = new Client(cluster.url, { connectTimeoutMs: WAIT_MS });
    const app = new App(cluster.url, { connectTimeoutMs: WAIT_MS });
    const started = new Map();
    let aborted = 0;
    let openAll;
    const all = new Promise((r) => (openAll = r));
    const slow = app.job("slow", { queue, timeoutMs: 30_000, maxAttempts: 5 }, async ({ n }, ctx) => {
      started.set(ctx.id, (started.get(ctx.id) ?? 0) + 1);
      ctx.signal.addEventListener("abort", () => aborted++);
      await all;
      return n;
    });
    const ids = [];
    for (let n = 0; n < 3; n++) ids.push((await slow.enqueue({ n })).id);
    const worker = app.worker({ queues: [queue], concurrency: 3, prefetch: 0, handleSignals: false, onError: () => {} });
    const running = worker.run();
    let rival = null;
    try {
      await waitFor(() => started.size === 3, "three jobs to run");
      const wid = worker.workerId;
      await client.enqueue("ts-marker", "job", null); // the leases are committed (see above)
      const [old, next] = await cluster.stopLeader();
      try {
        // A live connection takes the worker's id (and its leases) on the new leader first.
        rival = await Connection.open({ endpoint: { host: "127.0.0.1", port: next.listen }, connectTimeoutMs: WAIT_MS });
        const a = await rival.request(MessageType.SUBSCRIBE, { queues: [queue], credits: 0, name: "rival", host: "", pid: 0, concurrency: 0, resume: wid }, WAIT_MS);
        assert.equal(a.body.worker_id, wid);
      } finally {
        await cluster.kill(old);
      }
      await waitFor(() => worker.workerId !== null && worker.workerId !== wid, "the worker to subscribe under another id");
      await waitFor(() => aborted === 3, "the old runs to be aborted");
      // The rival goes: the jobs it held go back and are delivered to the worker, which runs them.
      await rival.close();
      rival = null;
      openAll();
      await waitFor(async () => {
        for (const id of ids) if ((await client.get(id)).state !== "succeeded") return false;
        return true;
      }, "every job to succeed");
      const jobs = await Promise.all(ids.map((id) => client.get(id)));
      assert.deepEqual(jobs.map((j) => j.result), [0, 1, 2]);
      assert.deepEqual(ids.map((id) => started.get(id)), [2, 2, 2]); // at least once: run again
    } finally {
      openAll();
      await rival?.close();
      await worker.close();
      await running;
      await client.close();
    }
  });
});
