// Runs the example's jobs until SIGTERM or SIGINT (then: stop taking, finish what runs, hand back the rest).
import { app } from "./tasks.js";

const worker = app.worker({ queues: ["emails", "reports"], concurrency: 10 });
console.log("worker: running; stop with Ctrl-C or SIGTERM");
await worker.run();
console.log(`worker: stopped (${worker.counts.succeeded} succeeded, ${worker.counts.failed} failed)`);
