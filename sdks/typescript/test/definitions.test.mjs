// Job definitions: what the app builds from `app.job(...)`, what a TypeScript worker registers
// before it subscribes, and how the server applies them to enqueues made elsewhere (HTTP, Python).
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { App, BadRequest, Client } from "../dist/index.js";
import { PYTHON, run, startServer, waitFor } from "./helpers.mjs";

const EMAIL_SCHEMA = {
  type: "object",
  properties: { to: { type: "string" }, subject: { type: "string" } },
  required: ["to"],
};

/** A Standard Schema with a Standard JSON Schema export (the shape zod >= 4.2 gives). */
function standardJsonSchema(json) {
  return {
    "~standard": {
      version: 1,
      vendor: "test",
      validate: (value) => (typeof value?.to === "string" ? { value } : { issues: [{ message: "to: expected a string" }] }),
      jsonSchema: {
        input: ({ target }) => {
          assert.equal(target, "draft-2020-12");
          return json;
        },
      },
    },
  };
}

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

test("the app builds one definition per job, the JSON Schema from a Standard JSON Schema export", () => {
  const app = new App("tcp://127.0.0.1:1");
  app.job("send", { queue: "emails", priority: 3, maxAttempts: 5, backoff: [1000, 5000], timeoutMs: 30_000, schema: standardJsonSchema(EMAIL_SCHEMA), validate: true }, () => {});
  app.job("plain", {}, () => {});
  // A schema without a JSON Schema export (a zod-style parse only): no schema is registered.
  app.job("parsed", { schema: { parse: (v) => v } }, () => {});
  app.job("explicit", { jsonSchema: { type: "object" }, validate: true }, () => {});
  const defs = Object.fromEntries(app.definitions().map((d) => [d.name, d]));
  assert.deepEqual(defs.send, {
    name: "send", queue: "emails", priority: 3, maxAttempts: 5, backoff: [1000, 5000], timeoutMs: 30_000, schema: EMAIL_SCHEMA, validate: true,
  });
  assert.deepEqual(defs.plain, {
    name: "plain", queue: "default", priority: 0, maxAttempts: null, backoff: null, timeoutMs: null, schema: null, validate: false,
  });
  assert.equal(defs.parsed.schema, null);
  assert.deepEqual(defs.explicit.schema, { type: "object" });
});

test("validate without a JSON Schema is refused when the job is declared", () => {
  const app = new App("tcp://127.0.0.1:1");
  assert.throws(() => app.job("v", { schema: { parse: (v) => v }, validate: true }, () => {}), (err) => {
    assert.ok(err instanceof BadRequest);
    assert.equal(err.field, "validate");
    assert.match(err.message, /job "v": validate needs a JSON Schema/);
    return true;
  });
  assert.deepEqual(app.jobNames, []);
});

test("a server older than job definitions: registerJobs says so (false) and throws nothing", async () => {
  const app = new App("tcp://127.0.0.1:1");
  app.job("j", {}, () => {});
  const old = { registerJobDefinitions: async () => { throw new BadRequest("unknown message type 40"); } };
  assert.equal(await app.registerJobs(old), false);
  const refusing = { registerJobDefinitions: async () => { throw new BadRequest("must be 0..10", { field: "definitions[0].priority" }); } };
  await assert.rejects(app.registerJobs(refusing), /job "j" \(app.job\): must be 0..10/);
});

test("a TS worker registers its definitions before subscribing; an HTTP enqueue gets them", async () => {
  const app = new App(server.url);
  app.job("ts_send", { queue: "ts_defs", maxAttempts: 7, timeoutMs: 45_000, schema: standardJsonSchema(EMAIL_SCHEMA), validate: true }, () => "sent");
  const worker = app.worker({ handleSignals: false });
  const running = worker.run();
  try {
    await waitFor(() => worker.workerId, "the worker to subscribe");
    // Registered before SUBSCRIBE: listed as soon as the worker is subscribed.
    const def = (await client.jobDefinitions()).find((d) => d.name === "ts_send");
    assert.ok(def, "ts_send is listed");
    assert.equal(def.queue, "ts_defs");
    assert.equal(def.maxAttempts, 7);
    assert.equal(def.timeoutMs, 45_000);
    assert.equal(def.validate, true);
    assert.deepEqual(def.schema, { properties: { subject: { type: "string" }, to: { type: "string" } }, required: ["to"], type: "object" });
    assert.match(def.registeredBy, /^spitfire-ts\//);

    const post = (payload) =>
      fetch(`${server.http}/api/queues/ts_defs/jobs`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ name: "ts_send", payload }),
      });
    const ok = await post({ to: "a@b.c" });
    assert.equal(ok.status, 201, await ok.clone().text());
    const job = await ok.json();
    const id = job.id ?? job.job?.id;
    const got = await client.get(id);
    assert.equal(got.maxAttempts, 7, "the definition's, not the server's default");
    assert.equal(got.timeoutMs, 45_000);

    // validate: the server refuses a payload that does not fit, naming the field; nothing enqueued.
    const before = (await client.stats("ts_defs")).totalJobs;
    const bad = await post({ to: 42 });
    assert.equal(bad.status, 422);
    const text = await bad.text();
    assert.match(text, /payload\.to/);
    assert.equal((await client.stats("ts_defs")).totalJobs, before);
    // Over the binary protocol too: a BadRequest naming the field.
    await assert.rejects(client.enqueue("ts_defs", "ts_send", { to: 42 }), (err) => {
      assert.ok(err instanceof BadRequest, String(err));
      assert.match(`${err.field} ${err.message}`, /payload\.to/);
      return true;
    });
  } finally {
    await worker.close();
    await running;
    await app.close();
  }
});

test("a definition the server refuses is reported and the worker still runs", async () => {
  const app = new App(server.url);
  const errors = [];
  app.job("ts_bad_def", { queue: "ts_defs_bad", priority: 99 }, () => {});
  const worker = app.worker({ handleSignals: false, onError: (e) => errors.push(e) });
  const running = worker.run();
  try {
    await waitFor(() => worker.workerId, "the worker to subscribe");
    assert.equal(errors.length, 1);
    assert.match(errors[0].message, /refused the app's job definitions: job "ts_bad_def" \(app.job\)/);
    assert.equal(errors[0].field, "definitions[0].priority");
    assert.equal((await client.jobDefinitions()).some((d) => d.name === "ts_bad_def"), false);
  } finally {
    await worker.close();
    await running;
    await app.close();
  }
});

test("a Python-registered definition is listed by the TS client; app.registerJobs for producers", async () => {
  const code = [
    "import sys, spitfire",
    "app = spitfire.App(sys.argv[1])",
    "@app.job(queue='py_defs', max_attempts=4, timeout=12)",
    "def py_defined(to: str, n: int = 1) -> None: ...",
    "app.register_jobs()",
  ].join("\n");
  const r = await run(PYTHON, ["-c", code, server.url]);
  assert.equal(r.code, 0, r.stderr);
  const def = (await client.jobDefinitions()).find((d) => d.name === "py_defined");
  assert.ok(def, "py_defined is listed");
  assert.equal(def.queue, "py_defs");
  assert.equal(def.maxAttempts, 4);
  assert.equal(def.timeoutMs, 12_000);
  assert.match(def.registeredBy, /^spitfire-python\//);
  assert.ok(def.schema !== null, "msgspec's schema of the arguments");

  // A producer registers too, without a worker; registering again changes nothing.
  const app = new App(server.url);
  app.job("ts_producer_job", { queue: "ts_p", maxAttempts: 2 }, () => {});
  try {
    assert.equal(await app.registerJobs(), true);
    const first = (await client.jobDefinitions()).find((d) => d.name === "ts_producer_job");
    assert.equal(first.maxAttempts, 2);
    assert.equal(await app.registerJobs(), true);
    const again = (await client.jobDefinitions()).find((d) => d.name === "ts_producer_job");
    assert.equal(again.updatedAt.getTime(), first.updatedAt.getTime());
  } finally {
    await app.close();
  }
});
