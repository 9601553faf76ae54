// The BullMQ side of `python -m perf peers` (driven by perf/peers/adapters/bullmq_peer.py).
//
//   node bullmq_bench.mjs single    --url U --jobs N --inflight K
//   node bullmq_bench.mjs batch     --url U --jobs N --batch B --inflight K
//   node bullmq_bench.mjs fill      --url U --jobs N
//   node bullmq_bench.mjs open-loop --url U --rate R --seconds S
//   node bullmq_bench.mjs worker    --url U --concurrency C
//
// Every command but `worker` prints one JSON line on stdout and exits. Timing only: the Python
// adapter turns the raw latencies (microseconds, `latencies_us`) into percentiles with the same
// code (and the same HDR histogram for the open loop) as every other peer's.
//
// The queue is "bench", the job name "noop", the payload the ~100-byte document of
// perf/peers/base.py's payload(). Jobs are added with removeOnComplete (BullMQ's documented
// auto-removal, which production setups use so Redis does not keep every finished job), so a
// drained queue is an empty "wait" and "active" list.
//
// `worker` runs a Worker at --concurrency until SIGTERM (the adapter starts one or several such
// processes). Without a Redis key written per job, it reports progress as perf/peers/external.py's
// drain_external reads it: every $PERF_PEER_PROGRESS_MS ms while its count changes it rewrites
// $PERF_PEER_PROGRESS_DIR/<pid>.json = {"processed": n} (a temporary file renamed over it, so never
// read half-written); once it alone has run $PERF_PEER_EXPECT jobs it writes $PERF_PEER_DONE_FILE
// at once; on SIGTERM it closes the Worker (finishing active jobs) and writes its final count.

import { renameSync, writeFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { Queue, Worker } from "bullmq";
import { Redis } from "ioredis";

const QUEUE = "bench";
const NAME = "noop";
const JOB_OPTS = { removeOnComplete: true };

function parseArgs(argv) {
  const [command, ...rest] = argv;
  const opts = {};
  for (let i = 0; i < rest.length; i += 2) {
    if (!rest[i].startsWith("--") || i + 1 >= rest.length) {
      throw new Error(`bad argument ${rest[i]}: expected --key value pairs`);
    }
    opts[rest[i].slice(2)] = rest[i + 1];
  }
  return { command, opts };
}

function payload(i) {
  return { n: i, to: `user-${String(i).padStart(8, "0")}@example.com`, subject: "Welcome aboard", body: "x".repeat(24) };
}

// BullMQ's ESM build cannot load ioredis by itself (it has no `require`): it wants a client
// instance. maxRetriesPerRequest: null is what BullMQ's docs require for a Worker's connection.
function connect(url) {
  return new Redis(url, { maxRetriesPerRequest: null });
}

// Resolves once the line is handed to the OS: a process.exit() right after a write to a pipe
// would cut the line at the pipe's 64 KiB (a result with 20,000 latencies is larger).
function emit(doc) {
  return new Promise((resolve) => process.stdout.write(`${JSON.stringify(doc)}\n`, resolve));
}

async function withQueue(url, fn) {
  const connection = connect(url);
  const queue = new Queue(QUEUE, { connection });
  try {
    await queue.waitUntilReady();
    return await fn(queue);
  } finally {
    await queue.close();
    connection.disconnect();
  }
}

// `jobs` queue.add calls from `inflight` concurrent promise chains; the latency of each.
async function single(opts) {
  const jobs = Number(opts.jobs);
  const inflight = Number(opts.inflight);
  return withQueue(opts.url, async (queue) => {
    await queue.add(NAME, payload(0), JOB_OPTS); // warm-up: scripts loaded, connection open
    const latencies = [];
    let next = 1;
    async function producer() {
      while (next <= jobs) {
        const i = next++;
        const t0 = performance.now();
        await queue.add(NAME, payload(i), JOB_OPTS);
        latencies.push(Math.round((performance.now() - t0) * 1000));
      }
    }
    const start = performance.now();
    await Promise.all(Array.from({ length: inflight }, producer));
    const seconds = (performance.now() - start) / 1000;
    return { jobs: latencies.length, seconds, latencies_us: latencies };
  });
}

// queue.addBulk with `batch` jobs per call from `inflight` concurrent promise chains.
async function batch(opts) {
  const jobs = Number(opts.jobs);
  const size = Number(opts.batch);
  const inflight = Number(opts.inflight);
  const parts = [];
  for (let s = 0; s < jobs; s += size) {
    const part = [];
    for (let i = s; i < Math.min(jobs, s + size); i++) part.push({ name: NAME, data: payload(i), opts: JOB_OPTS });
    parts.push(part);
  }
  return withQueue(opts.url, async (queue) => {
    await queue.add(NAME, payload(0), JOB_OPTS);
    let next = 0;
    let done = 0;
    async function producer() {
      while (next < parts.length) {
        const part = parts[next++];
        await queue.addBulk(part);
        done += part.length;
      }
    }
    const start = performance.now();
    await Promise.all(Array.from({ length: inflight }, producer));
    return { jobs: done, seconds: (performance.now() - start) / 1000 };
  });
}

// The drain's jobs, enqueued before the worker starts (not timed): addBulk, 1,000 per call.
async function fill(opts) {
  const jobs = Number(opts.jobs);
  return withQueue(opts.url, async (queue) => {
    for (let s = 0; s < jobs; s += 1000) {
      const part = [];
      for (let i = s; i < Math.min(jobs, s + 1000); i++) part.push({ name: NAME, data: payload(i), opts: JOB_OPTS });
      await queue.addBulk(part);
    }
    return { jobs, waiting: await queue.getWaitingCount() };
  });
}

// Node's timers have millisecond resolution: sleep with a timer until shortly before `when`, then
// yield to the event loop (answers keep being read) until it has come (as perf/open_loop.py).
const TIMER_SLACK_MS = 2;
function sleepUntil(when) {
  return new Promise((resolve) => {
    const spin = () => (performance.now() >= when ? resolve() : setImmediate(spin));
    const delay = when - performance.now() - TIMER_SLACK_MS;
    if (delay > 0) setTimeout(spin, delay);
    else spin();
  });
}

// `rate` queue.add calls per second for `seconds` on a fixed schedule, each its own promise;
// latency from each job's scheduled send time (no coordinated omission).
async function openLoop(opts) {
  const rate = Number(opts.rate);
  const total = Math.floor(rate * Number(opts.seconds));
  return withQueue(opts.url, async (queue) => {
    await queue.add(NAME, payload(0), JOB_OPTS);
    const latencies = new Array(total);
    const pending = [];
    const start = performance.now() + 50;
    for (let i = 0; i < total; i++) {
      const scheduled = start + (i * 1000) / rate;
      await sleepUntil(scheduled);
      pending.push(
        queue.add(NAME, payload(i), JOB_OPTS).then(() => {
          latencies[i] = Math.max(1, Math.round((performance.now() - scheduled) * 1000));
        }),
      );
    }
    await Promise.all(pending);
    const seconds = (performance.now() - start) / 1000;
    return { offered_per_s: rate, seconds, latencies_us: latencies };
  });
}

// A Worker running the no-op job until SIGTERM (see the header).
async function worker(opts) {
  const expect = Number(process.env.PERF_PEER_EXPECT ?? 0);
  const doneFile = process.env.PERF_PEER_DONE_FILE;
  const progressDir = process.env.PERF_PEER_PROGRESS_DIR;
  const progressMs = Number(process.env.PERF_PEER_PROGRESS_MS ?? 5);
  const concurrency = Number(opts.concurrency);
  let processed = 0;
  let written = 0;
  const writeProgress = () => {
    if (!progressDir || processed === written) return;
    const path = `${progressDir}/${process.pid}.json`;
    writeFileSync(`${path}.tmp`, JSON.stringify({ processed }));
    renameSync(`${path}.tmp`, path);
    written = processed;
  };
  const ticker = setInterval(writeProgress, progressMs);
  const connection = connect(opts.url);
  const w = new Worker(
    QUEUE,
    async () => {
      processed += 1;
      if (processed === expect && doneFile) writeFileSync(doneFile, "done");
    },
    { connection, concurrency, autorun: true },
  );
  w.on("error", (err) => console.error(`worker error: ${err}`));
  let closing = false;
  const stop = async () => {
    if (closing) return;
    closing = true;
    clearInterval(ticker);
    await w.close();
    connection.disconnect();
    writeProgress();
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  await w.waitUntilReady();
  console.error(`bullmq worker ready: concurrency ${concurrency}, pid ${process.pid}`);
}

const COMMANDS = { single, batch, fill, "open-loop": openLoop };

const { command, opts } = parseArgs(process.argv.slice(2));
if (command === "worker") {
  await worker(opts);
} else if (COMMANDS[command]) {
  await emit(await COMMANDS[command](opts));
  process.exit(0);
} else {
  console.error(`unknown command ${command}: one of ${Object.keys(COMMANDS).join(", ")}, worker`);
  process.exit(2);
}
