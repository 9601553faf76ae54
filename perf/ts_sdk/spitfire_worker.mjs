// One Node worker process of perf/ts_sdk/bench.mjs: no-op jobs until SIGTERM.
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const REPO = resolve(fileURLToPath(new URL("../..", import.meta.url)));
const { App } = await import(join(REPO, "sdks", "typescript", "dist", "index.js"));
const [url, concurrency] = process.argv.slice(2);
const app = new App(url);
app.job("noop", { queue: "bench" }, () => undefined);
const worker = app.worker({ concurrency: Number(concurrency) });
const running = worker.run();
// run() resolves only at shutdown; subscribed once workerId is set.
for (let i = 0; i < 3000 && worker.workerId === null; i++) await new Promise((r) => setTimeout(r, 5));
console.log("subscribed");
await running;
