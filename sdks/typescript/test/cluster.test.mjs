// The TypeScript SDK against a real 3-member cluster (spitfire-server --cluster) on loopback: given
// the three addresses, a client follows the leader through a SIGKILL and enqueues every job exactly
// once (request tokens), and a worker drains the queue through the failover. Several addresses in
// one URL parse as the Python SDK parses them.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { App, Client, InvalidURL, NotLeader } from "../dist/index.js";
import { parseUrls } from "../dist/connection.js";
import { startCluster } from "./clusterhelpers.mjs";
import { sleep, waitFor, WAIT_MS } from "./helpers.mjs";

const JOBS = 1000;

describe("several addresses", () => {
  test("parse like the Python SDK", () => {
    assert.deepEqual(parseUrls("tcp://h1:1, h2:2,h1:1"), [{ host: "h1", port: 1 }, { host: "h2", port: 2 }]);
    assert.deepEqual(parseUrls(["tcp://h1:1", "tcp://[::1]:3"]), [{ host: "h1", port: 1 }, { host: "::1", port: 3 }]);
    assert.throws(() => parseUrls("tcp://h1:1,,h2:2"), InvalidURL);
    assert.throws(() => parseUrls([]), InvalidURL);
    assert.equal(new Client("tcp://h1:1,h2:2").url, "tcp://h1:1,h2:2");
  });

  test("NOT_LEADER is a NotLeader naming the leader", () => {
    const err = new NotLeader("not the leader", { leader: "127.0.0.1:7878" });
    assert.equal(err.code, "NOT_LEADER");
    assert.equal(err.leader, "127.0.0.1:7878");
  });
});

describe("a 3-member cluster", { timeout: 300_000 }, () => {
  let cluster;
  before(async () => {
    cluster = await startCluster();
    await cluster.leader();
  });
  after(async () => {
    await cluster?.close();
  });

  test("a client with the three addresses enqueues every job exactly once through a leader kill", async () => {
    const client = new Client(cluster.url, { connectTimeoutMs: WAIT_MS });
    try {
      const ids = new Map();
      let next = 0;
      let killing = null;
      const produce = async () => {
        for (let n = next++; n < JOBS; n = next++) {
          ids.set(n, (await client.enqueue("ts-through-kill", "job", { n })).id);
          if (ids.size === JOBS / 4) killing = cluster.killLeader();
        }
      };
      await Promise.all(Array.from({ length: 8 }, produce));
      await killing;
      assert.equal(ids.size, JOBS);
      assert.equal(new Set(ids.values()).size, JOBS);
      const stats = await client.stats("ts-through-kill");
      assert.equal(stats.queues[0].total, JOBS);
    } finally {
      await client.close();
    }
  });

  test("a worker with the three addresses drains the queue through a leader kill", async () => {
    const client = new Client(cluster.url, { connectTimeoutMs: WAIT_MS });
    const app = new App(cluster.url, { connectTimeoutMs: WAIT_MS });
    const ran = new Set();
    app.job("drain", { queue: "ts-drain" }, async ({ n }) => {
      await sleep(2);
      ran.add(n);
    });
    const count = 300;
    await client.enqueueMany("ts-drain", "drain", Array.from({ length: count }, (_, n) => ({ n })));
    const worker = app.worker({ queues: ["ts-drain"], concurrency: 8, handleSignals: false });
    const running = worker.run();
    try {
      await waitFor(() => ran.size >= count / 3, "a third of the jobs to run");
      await cluster.killLeader();
      await waitFor(async () => (await client.stats("ts-drain")).queues[0].counts.succeeded === count,
        "every job to succeed", 120_000);
      assert.equal(ran.size, count);
    } finally {
      await worker.close();
      await running;
      await client.close();
    }
  });
});
