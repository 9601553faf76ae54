// The TypeScript SDK against a real 3-member cluster (spitfire-server --cluster) on loopback: given
// the three addresses, a client follows the leader through a SIGKILL and enqueues every job exactly
// once (request tokens), and a worker drains the queue through the failover. Several addresses in
// one URL parse as the Python SDK parses them.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { setTimeout as delay } from "node:timers/promises";
import { App, Client, InvalidURL, NotLeader } from "../dist/index.js";
import { parseUrls } from "../dist/connection.js";
import { join, PYTHON, sleep, stopProcess, tmpdir, waitFor, WAIT_MS } from "./helpers.mjs";

const JOBS = 1000;

async function freePorts(count) {
  const servers = await Promise.all(
    Array.from({ length: count }, () => new Promise((resolve) => {
      const s = createServer();
      s.listen(0, "127.0.0.1", () => resolve(s));
    })),
  );
  const ports = servers.map((s) => s.address().port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

/** Three members, each its own data directory; `start(i)` / `kill(i)` by PID. */
async function startCluster() {
  const root = mkdtempSync(join(tmpdir(), "spitfire-ts-cluster-"));
  const ports = await freePorts(9);
  const ids = ["a", "b", "c"];
  const membersArg = ids.map((id, i) => `${id}=127.0.0.1:${ports[i]}`).join(",");
  const members = ids.map((id, i) => ({ id, raft: ports[i], listen: ports[3 + i], http: ports[6 + i], proc: null }));
  const start = (m) => {
    m.proc = spawn(PYTHON, [
      "-m", "spitfire.server.cli", "--node-id", m.id, "--cluster", membersArg,
      "--data-dir", join(root, m.id), "--listen", `127.0.0.1:${m.listen}`, "--http", `127.0.0.1:${m.http}`, "--no-quic",
    ], { stdio: ["ignore", "ignore", "ignore"] });
  };
  const alive = (m) => m.proc !== null && m.proc.exitCode === null && m.proc.signalCode === null;
  const get = async (m, path) => {
    try {
      const r = await Promise.race([fetch(`http://127.0.0.1:${m.http}${path}`), delay(2000, null)]);
      return r?.ok ? await r.json() : null;
    } catch {
      return null;
    }
  };
  const view = (m) => get(m, "/api/cluster");
  const serving = async (m) => (await get(m, "/api/queues")) !== null;
  const leader = (among = members) => waitFor(async () => {
    for (const m of among.filter(alive)) {
      const v = await view(m);
      if (v?.leader === m.id && (await serving(m))) return m;
    }
    return null;
  }, "a leader that serves", WAIT_MS);
  members.forEach(start);
  return {
    members,
    url: `tcp://${members.map((m) => `127.0.0.1:${m.listen}`).join(",")}`,
    leader,
    /** SIGKILL the leader; once another serves, start it again and wait until it has rejoined. */
    async killLeader() {
      const old = await leader();
      const exited = new Promise((r) => old.proc.once("exit", r));
      process.kill(old.proc.pid, "SIGKILL");
      await exited;
      await leader(members.filter((m) => m !== old));
      start(old);
      await waitFor(async () => (await view(old))?.nodes?.some((n) => n.id === old.id && n.role), "the member to rejoin");
    },
    async close() {
      await Promise.all(members.filter(alive).map((m) => stopProcess(m.proc)));
      rmSync(root, { recursive: true, force: true });
    },
  };
}

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
