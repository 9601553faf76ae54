// Cross-language: a Python producer's jobs run by a TypeScript worker, and a TypeScript producer's
// jobs run by a Python worker (`spitfire worker --burst`), with non-ASCII strings, nested objects,
// big integers (bigint past 2^53), binary data and null intact.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { App, Client } from "../dist/index.js";
import { PYTHON, run, SPITFIRE, startServer } from "./helpers.mjs";

const FIXTURES = fileURLToPath(new URL("./fixtures/", import.meta.url));

let server;
let client;
before(async () => {
  server = await startServer();
  client = new Client(server.url);
});
after(async () => {
  await client?.close();
  await server?.stop();
});

test("a Python producer's job, run by a TypeScript worker", async () => {
  const enq = await run(PYTHON, ["py_producer.py", "enqueue", server.url], { cwd: FIXTURES });
  assert.equal(enq.code, 0, enq.stderr);
  const id = enq.stdout.trim();
  const app = new App(server.url);
  let got;
  app.job("from_python", { queue: "py2ts" }, (payload) => {
    got = payload;
    return { echo: payload };
  });
  const worker = app.worker({ handleSignals: false });
  const running = worker.run();
  try {
    await client.wait(id, { timeoutMs: 20_000 });
  } finally {
    await worker.close();
    await running;
    await app.close();
  }
  assert.deepEqual(got, {
    text: "Zürich 🚀 naïve — 日本語",
    nested: { a: [1, { b: null, c: [true, false] }], é: { deep: { deeper: [[], {}] } } },
    big: 2n ** 60n + 3n,
    huge: 2n ** 64n - 1n,
    negative: -(2n ** 62n) - 5n,
    small: 42,
    real: 1.5,
    data: new Uint8Array(Array.from({ length: 256 }, (_, i) => i)),
    nothing: null,
    // A number up to 2^53 in magnitude (exact there), a bigint past it.
    ints: [2 ** 31, 2 ** 32, 2 ** 40, 2 ** 53 - 1, 2 ** 53, -(2 ** 40), -(2 ** 31) - 1, -(2n ** 53n) - 1n],
  });
  assert.equal(Object.getPrototypeOf(got.data), Uint8Array.prototype);
  // The Python side reads the result back exactly as it sent the payload.
  const check = await run(PYTHON, ["py_producer.py", "check", server.url, id], { cwd: FIXTURES });
  assert.equal(check.code, 0, check.stderr + check.stdout);
});

test("a TypeScript producer's job, run by a Python worker", async () => {
  const app = new App(server.url);
  const echo = app.job("echo", { queue: "ts2py" }, () => undefined); // declared for its type; Python runs it
  const payload = {
    text: "Grüße 🚀 — 中文",
    nested: { list: [1, "two", { three: [null, true] }], empty: {}, none: [] },
    big: 2n ** 53n + 1n,
    data: new Uint8Array([0, 1, 2, 253, 254, 255]),
    nothing: null,
    small: -7,
    real: 0.25,
    // Past 32 bits a number is still an integer on the wire (msgpackr alone would write a float).
    ints: [2 ** 31, 2 ** 32, 2 ** 40, 2 ** 53 - 1, 2n ** 40n, -(2 ** 40), -(2 ** 31) - 1, 2n ** 63n, -(2n ** 63n)],
  };
  const id = await echo.enqueue(payload);
  const py = await run(SPITFIRE, ["worker", "pyapp:app", "--url", server.url, "--burst"], {
    cwd: FIXTURES,
    env: { PYTHONPATH: FIXTURES },
    ms: 60_000,
  });
  assert.equal(py.code, 0, py.stderr);
  const result = await client.wait(id, { timeoutMs: 20_000 });
  assert.deepEqual(result, {
    ...payload,
    ints: [2 ** 31, 2 ** 32, 2 ** 40, 2 ** 53 - 1, 2 ** 40, -(2 ** 40), -(2 ** 31) - 1, 2n ** 63n, -(2n ** 63n)],
    types: {
      text: "str", big: "int", data: "bytes", nothing: "NoneType", small: "int", real: "float",
      ints: Array(9).fill("int"),
    },
  });
  await app.close();
});
