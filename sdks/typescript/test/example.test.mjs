// examples/typescript, built and run against a live server: the worker runs as its own process and
// stops gracefully on SIGTERM (exit code 0).
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import { REPO, run, startProcess, startServer, stopProcess, waitFor } from "./helpers.mjs";

const EXAMPLE = join(REPO, "examples", "typescript");
const SDK = join(REPO, "sdks", "typescript");

test("examples/typescript: producer and worker", async () => {
  // What `npm install` there does (a link to ../../sdks/typescript), without touching the registry.
  const link = join(EXAMPLE, "node_modules", "@spitfirehq", "sdk");
  if (!existsSync(link)) {
    mkdirSync(join(EXAMPLE, "node_modules", "@spitfirehq"), { recursive: true });
    symlinkSync(SDK, link, "dir");
  }
  const tsc = await run(process.execPath, [join(SDK, "node_modules", "typescript", "bin", "tsc"), "-p", EXAMPLE], { ms: 60_000 });
  assert.equal(tsc.code, 0, tsc.stdout + tsc.stderr);

  const server = await startServer();
  const env = { SPITFIRE_URL: server.url };
  const worker = startProcess(process.execPath, [join(EXAMPLE, "dist", "worker.js")], { env, cwd: EXAMPLE });
  try {
    await waitFor(() => worker.output.includes("worker: running"), "the worker to start");
    const producer = await run(process.execPath, [join(EXAMPLE, "dist", "producer.js")], { env, cwd: EXAMPLE, ms: 60_000 });
    assert.equal(producer.code, 0, producer.stdout + producer.stderr);
    const out = producer.stdout;
    assert.ok(out.includes('succeeded: {"sent":"ada@example.com","attempt":1}'), out);
    assert.ok(out.includes('succeeded: {"sent":"slow@example.com","attempt":1}'), out);
    assert.match(out, /dead: Permanent: not an address: not-an-address/);
    assert.ok(out.includes('succeeded: {"reportId":"1152921504606846976n","rows":3}'), out);
    const exited = new Promise((r) => worker.once("exit", (code, signal) => r({ code, signal })));
    process.kill(worker.pid, "SIGTERM");
    const { code, signal } = await Promise.race([exited, new Promise((_, rej) => setTimeout(() => rej(new Error(`the worker did not exit on SIGTERM:\n${worker.output}`)), 30_000))]);
    assert.deepEqual({ code, signal }, { code: 0, signal: null }, worker.output);
    assert.match(worker.output, /worker: stopped \(3 succeeded, 1 failed\)/);
  } finally {
    await stopProcess(worker);
    await server.stop();
  }
});
