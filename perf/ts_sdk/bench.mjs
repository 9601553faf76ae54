// The TypeScript SDK beside BullMQ, in one run, on this machine:
//
//   node perf/ts_sdk/bench.mjs [--jobs 20000] [--inflight 64] [--concurrency 50] [--rounds 1]
//
// - enqueue: `--jobs` single enqueues with `--inflight` concurrent promise chains, each awaiting
//   its answer (Spitfire: durable after the fsync of its group; BullMQ: redis with
//   `appendfsync always`, so every write is fsynced before the reply);
// - drain: one Node worker process (`--concurrency` handlers, no-op jobs) empties the queue;
//   timed from resuming the paused queue until the server counts every job finished. 50 is
//   BullMQ's concurrency guide's value (perf/README.md), given to both.
// - `--rounds N` runs Spitfire and BullMQ alternately N times (A/B on a shared, noisy machine);
//   the figures are the medians.
//
// Spitfire is `spitfire-server` from the repository's .venv (default `group` durability);
// redis comes from `python -m perf.peers.redis_service always`; BullMQ from perf/peers/node
// (`npm ci` there first). Payload: perf/peers/node/bullmq_bench.mjs's ~100-byte document.
// Prints a table with the ratios and writes perf/results/ts-sdk-<timestamp>.json (the Python
// harness's format: suite, when, machine, commit, config, figures; $SPITFIRE_PERF_RESULTS
// overrides the folder). Every process started is stopped by PID.
import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { cpus, hostname, release, tmpdir, totalmem } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const REPO = resolve(fileURLToPath(new URL("../..", import.meta.url)));
const BIN = join(REPO, ".venv", "bin");
const HERE = fileURLToPath(new URL(".", import.meta.url));
const { Client } = await import(join(REPO, "sdks", "typescript", "dist", "index.js"));
const peers = createRequire(join(REPO, "perf", "peers", "node", "package.json"));
const { Queue } = await import(peers.resolve("bullmq"));
const { Redis } = await import(peers.resolve("ioredis"));

const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith("--") ? [...acc, [a.slice(2), all[i + 1]]] : acc), []));
const JOBS = Number(args.jobs ?? 20_000);
const INFLIGHT = Number(args.inflight ?? 64);
const CONCURRENCY = Number(args.concurrency ?? 50);
const ROUNDS = Number(args.rounds ?? 1);
const DEADLINE_MS = 300_000;

export function payload(i) {
  return { n: i, to: `user-${String(i).padStart(8, "0")}@example.com`, subject: "Welcome aboard", body: "x".repeat(24) };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Starts a process and resolves with it once a stdout line matches `ready` (the match is kept). */
function startUntil(cmd, argv, ready, opts = {}) {
  const proc = spawn(cmd, argv, { stdio: ["pipe", "pipe", "inherit"], ...opts });
  let out = "";
  return new Promise((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`${cmd} did not get ready: ${out}`)), 30_000);
    proc.stdout.on("data", (c) => {
      out += c;
      const m = ready.exec(out);
      if (m) {
        clearTimeout(timer);
        proc.match = m;
        res(proc);
      }
    });
    proc.on("exit", (code) => rej(new Error(`${cmd} exited with ${code}: ${out}`)));
  });
}

async function stop(proc) {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise((r) => proc.once("exit", r));
  process.kill(proc.pid, "SIGTERM");
  const t = setTimeout(() => process.kill(proc.pid, "SIGKILL"), 10_000);
  await exited;
  clearTimeout(t);
}

/** `JOBS` calls of `add(i)` from `INFLIGHT` concurrent chains; jobs per second. */
async function enqueueRate(add) {
  await add(0);
  let next = 1;
  const start = performance.now();
  await Promise.all(Array.from({ length: INFLIGHT }, async () => {
    while (next <= JOBS) await add(next++);
  }));
  return JOBS / ((performance.now() - start) / 1000);
}

/** Polls `left()` until 0; seconds from `t0`. */
async function until0(left, t0) {
  const deadline = Date.now() + DEADLINE_MS;
  while ((await left()) > 0) {
    if (Date.now() > deadline) throw new Error("the drain did not finish in time");
    await sleep(5);
  }
  return (performance.now() - t0) / 1000;
}

async function spitfire() {
  const dataDir = mkdtempSync(join(tmpdir(), "spitfire-bench-"));
  const server = await startUntil(join(BIN, "spitfire-server"), ["--data-dir", dataDir, "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--no-quic"], /binary:\s+(tcp:\/\/\S+)[\s\S]*stop with/);
  const url = server.match[1];
  const client = new Client(url);
  let worker;
  try {
    const enqueue = await enqueueRate((i) => client.enqueue("bench", "noop", payload(i)));
    await client.pause("bench");
    worker = await startUntil(process.execPath, [join(HERE, "spitfire_worker.mjs"), url, String(CONCURRENCY)], /subscribed/);
    const total = JOBS + 1;
    const t0 = performance.now();
    await client.resume("bench");
    const drain = total / (await until0(async () => {
      const q = (await client.stats("bench")).queues[0];
      return total - q.counts.succeeded;
    }, t0));
    return { enqueue, drain };
  } finally {
    if (worker) await stop(worker);
    await client.close();
    await stop(server);
    rmSync(dataDir, { recursive: true, force: true });
  }
}

async function bullmq() {
  const redisProc = await startUntil(join(BIN, "python"), ["-m", "perf.peers.redis_service", "always"], /(redis:\/\/\S+)/, { cwd: REPO });
  const url = redisProc.match[1];
  const connection = new Redis(url, { maxRetriesPerRequest: null });
  const queue = new Queue("bench", { connection });
  let worker;
  try {
    await queue.waitUntilReady();
    const opts = { removeOnComplete: true };
    const enqueue = await enqueueRate((i) => queue.add("noop", payload(i), opts));
    await queue.pause();
    worker = await startUntil(process.execPath, [join(HERE, "bullmq_worker.mjs"), url, String(CONCURRENCY)], /ready/);
    const t0 = performance.now();
    await queue.resume();
    const drain = (JOBS + 1) / (await until0(async () => {
      const c = await queue.getJobCounts("wait", "active", "paused", "prioritized");
      return c.wait + c.active + c.paused + c.prioritized;
    }, t0));
    return { enqueue, drain };
  } finally {
    if (worker) await stop(worker);
    await queue.close();
    connection.disconnect();
    redisProc.stdin.end("\n"); // redis_service stops its redis-server (by PID) on Enter
    await Promise.race([new Promise((r) => redisProc.once("exit", r)), sleep(10_000)]);
    await stop(redisProc);
  }
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

const runs = { spitfire: [], bullmq: [] };
for (let round = 0; round < ROUNDS; round++) {
  runs.spitfire.push(await spitfire());
  runs.bullmq.push(await bullmq());
}
const figure = (who, what) => median(runs[who].map((r) => r[what]));
const s = { enqueue: figure("spitfire", "enqueue"), drain: figure("spitfire", "drain") };
const b = { enqueue: figure("bullmq", "enqueue"), drain: figure("bullmq", "drain") };
const ratio = { enqueue: s.enqueue / b.enqueue, drain: s.drain / b.drain };

const fmt = (n) => Math.round(n).toLocaleString("en-US").padStart(9);
console.log(`${JOBS} no-op jobs, enqueue with ${INFLIGHT} in flight, drain by one Node worker process (concurrency ${CONCURRENCY}), median of ${ROUNDS} round(s)`);
console.log("                         enqueue/s   drain/s");
console.log(`Spitfire (TS SDK, group) ${fmt(s.enqueue)} ${fmt(s.drain)}`);
console.log(`BullMQ (fsync always)    ${fmt(b.enqueue)} ${fmt(b.drain)}`);
console.log(`ratio                    ${ratio.enqueue.toFixed(2).padStart(9)} ${ratio.drain.toFixed(2).padStart(9)}`);

function git(...argv) {
  try {
    return execFileSync("git", argv, { cwd: REPO, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
  } catch {
    return "";
  }
}
const cpuModel = cpus()[0]?.model ?? "";
const versions = (name) => {
  try {
    return JSON.parse(readFileSync(join(REPO, "perf", "peers", "node", "node_modules", name, "package.json"), "utf8")).version;
  } catch {
    return null;
  }
};
const jobsPerSecond = (name, value, runsOf, notes, target = "", ok = null) => ({ name, value, unit: "jobs/s", target, ok, runs: runsOf, notes });
const figures = [
  jobsPerSecond("ts-sdk enqueue spitfire jobs/s", s.enqueue, runs.spitfire.map((r) => r.enqueue), "spitfire group, TypeScript SDK Client"),
  jobsPerSecond("ts-sdk enqueue bullmq jobs/s", b.enqueue, runs.bullmq.map((r) => r.enqueue), "bullmq on redis appendfsync always"),
  jobsPerSecond("ts-sdk drain spitfire jobs/s", s.drain, runs.spitfire.map((r) => r.drain), "spitfire group, one TypeScript SDK Worker process"),
  jobsPerSecond("ts-sdk drain bullmq jobs/s", b.drain, runs.bullmq.map((r) => r.drain), "one BullMQ Worker process"),
  { name: "ts-sdk enqueue ratio spitfire/bullmq", value: ratio.enqueue, unit: "x", target: ">= 1", ok: ratio.enqueue >= 1, runs: [], notes: "" },
  { name: "ts-sdk drain ratio spitfire/bullmq", value: ratio.drain, unit: "x", target: ">= 1", ok: ratio.drain >= 1, runs: [], notes: "" },
];
const dirty = git("status", "--porcelain") ? "-dirty" : "";
const stamp = new Date().toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "");
const doc = {
  suite: "ts-sdk",
  when: new Date().toISOString().replace(/\.\d+Z$/, "+0000"),
  machine: { host: hostname(), cpus: cpus().length, cpu_model: cpuModel, mem_gib: Math.round((totalmem() / 2 ** 30) * 10) / 10, node: process.versions.node, kernel: release() },
  commit: (git("rev-parse", "--short", "HEAD") || "unknown") + dirty,
  config: { jobs: JOBS, inflight: INFLIGHT, concurrency: CONCURRENCY, rounds: ROUNDS, spitfire_durability: "group", redis_appendfsync: "always", bullmq: versions("bullmq"), ioredis: versions("ioredis") },
  figures,
};
const dir = process.env.SPITFIRE_PERF_RESULTS || join(REPO, "perf", "results");
mkdirSync(dir, { recursive: true });
const path = join(dir, `ts-sdk-${stamp}.json`);
writeFileSync(path, `${JSON.stringify(doc, null, 2)}\n`);
console.log(`wrote ${path}`);
