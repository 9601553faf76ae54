// A real 3-member cluster (spitfire-server --cluster) on loopback for the TypeScript SDK's tests:
// each member its own data directory and free ports, started, SIGKILLed and stopped by PID; every
// wait polls a member's HTTP API, bounded in time.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { setTimeout as delay } from "node:timers/promises";
import { join, PYTHON, stopProcess, tmpdir, waitFor, WAIT_MS } from "./helpers.mjs";

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
export async function startCluster() {
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
    start,
    alive,
    url: `tcp://${members.map((m) => `127.0.0.1:${m.listen}`).join(",")}`,
    leader,
    /**
     * SIGSTOP the leader (its connections stay open; it answers nothing) and wait until another
     * member serves; resolves to [stopped, new leader]. SIGKILL the stopped one with `kill`.
     */
    async stopLeader() {
      const old = await leader();
      process.kill(old.proc.pid, "SIGSTOP");
      try {
        return [old, await leader(members.filter((m) => m !== old))];
      } catch (err) {
        process.kill(old.proc.pid, "SIGKILL");
        throw err;
      }
    },
    /** SIGKILL a member by PID (stopped or not) and wait for its exit. */
    async kill(m) {
      if (!alive(m)) return;
      const exited = new Promise((r) => m.proc.once("exit", r));
      process.kill(m.proc.pid, "SIGKILL");
      await exited;
    },
    /** Start a member that was killed again and wait until it has rejoined (a majority for the next kill). */
    async restart(m) {
      start(m);
      await waitFor(async () => (await view(m))?.nodes?.some((n) => n.id === m.id && n.role), "the member to rejoin");
    },
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
