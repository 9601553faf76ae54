// One Node worker process of perf/ts_sdk/bench.mjs, BullMQ's side: no-op jobs until SIGTERM.
import { createRequire } from "node:module";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const REPO = resolve(fileURLToPath(new URL("../..", import.meta.url)));
const peers = createRequire(join(REPO, "perf", "peers", "node", "package.json"));
const { Worker } = await import(peers.resolve("bullmq"));
const { Redis } = await import(peers.resolve("ioredis"));
const [url, concurrency] = process.argv.slice(2);
const connection = new Redis(url, { maxRetriesPerRequest: null });
const worker = new Worker("bench", async () => undefined, { connection, concurrency: Number(concurrency) });
await worker.waitUntilReady();
console.log("ready");
process.on("SIGTERM", async () => {
  await worker.close();
  connection.disconnect();
  process.exit(0);
});
