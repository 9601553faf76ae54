// OpenTelemetry in the TypeScript worker: each job runs in a CONSUMER "process <queue>" span that
// continues the producer's trace (here a Python producer's), jobs enqueued by the handler stay in
// it, a failure records its exception; `tracing: false` and no TracerProvider make no span.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { context, propagation, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { App } from "../dist/index.js";
import { PYTHON, run, startServer, WAIT_MS } from "./helpers.mjs";

const FIXTURES = fileURLToPath(new URL("./fixtures/", import.meta.url));
const exporter = new InMemorySpanExporter();
/** Resolves once `n` spans named `name` have ended (an event, not a poll). */
let waiters = [];
const ended = (name, n) =>
  new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`fewer than ${n} "${name}" spans within ${WAIT_MS} ms`)), WAIT_MS);
    const w = () => {
      const spans = exporter.getFinishedSpans().filter((s) => s.name === name);
      if (spans.length < n) return false;
      clearTimeout(timer);
      resolve(spans);
      return true;
    };
    if (!w()) waiters.push(w);
  });
const notify = {
  onStart() {},
  onEnd() {
    waiters = waiters.filter((w) => !w());
  },
  forceFlush: async () => {},
  shutdown: async () => {},
};
let server;
before(async () => {
  trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter), notify] }));
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  server = await startServer();
});
after(async () => {
  await server?.stop();
  trace.disable();
  propagation.disable();
  context.disable();
});

const parentOf = (span) => span.parentSpanContext?.spanId;

test("a Python producer's trace goes on through the TypeScript worker to the jobs it enqueues", async () => {
  const queue = `ts-worker-traced-${Date.now().toString(36)}`;
  const produced = await run(PYTHON, [`${FIXTURES}py_trace_producer.py`, server.url, queue]);
  assert.equal(produced.code, 0, produced.stderr);
  const { traced, boom, spans: [send, sendBoom] } = JSON.parse(produced.stdout);
  exporter.reset();

  const app = new App(server.url);
  const child = app.job("child", { queue }, () => "done");
  app.job("traced", { queue }, async (p) => {
    await child.enqueue({ n: p.n + 1 });
  });
  app.job("boom", { queue }, () => {
    throw new RangeError("kaput");
  });
  const nobody = await app.client.enqueue(queue, "nobody", {}, { maxAttempts: 3 }); // no handler here: dead at once
  const worker = app.worker({ concurrency: 2, handleSignals: false, name: "ts-traced-worker" });
  const running = worker.run();
  try {
    const processed = await ended(`process ${queue}`, 4);
    const byName = (n) => processed.find((s) => s.attributes["messaging.spitfire.job.name"] === n);
    const p = byName("traced");
    assert.equal(p.spanContext().traceId, send.trace_id);
    assert.equal(parentOf(p), send.span_id);
    assert.deepEqual(p.links.map((l) => l.context.spanId), [send.span_id]);
    assert.equal(p.kind, 4 /* CONSUMER */);
    assert.deepEqual(
      Object.fromEntries(Object.entries(p.attributes).filter(([k]) => k !== "messaging.spitfire.job.name")),
      {
        "messaging.system": "spitfire",
        "messaging.operation.name": "process",
        "messaging.operation.type": "process",
        "messaging.destination.name": queue,
        "messaging.message.id": traced,
        "messaging.client.id": "ts-traced-worker",
        "messaging.spitfire.attempt": 1,
        "messaging.spitfire.outcome": "succeeded",
      },
    );
    // The child job: enqueued inside the run (a send span whose parent is the process span), then run.
    const childSend = exporter.getFinishedSpans().find((s) => s.name === `send ${queue}` && parentOf(s) === p.spanContext().spanId);
    assert.ok(childSend, "the child job's send span is a child of the process span");
    assert.equal(parentOf(childSend), p.spanContext().spanId);
    const c = byName("child");
    assert.equal(c.spanContext().traceId, send.trace_id);
    assert.equal(parentOf(c), childSend.spanContext().spanId);

    const b = byName("boom");
    assert.equal(b.spanContext().traceId, sendBoom.trace_id);
    assert.equal(b.attributes["messaging.message.id"], boom);
    assert.equal(b.attributes["messaging.spitfire.outcome"], "dead");
    assert.equal(b.attributes["error.type"], "RangeError");
    assert.equal(b.status.code, 2 /* ERROR */);
    assert.deepEqual(b.events.map((e) => e.name), ["exception"]);
    assert.equal(b.events[0].attributes["exception.message"], "kaput");

    const n = byName("nobody");
    assert.equal(n.attributes["messaging.message.id"], nobody.id);
    assert.equal(n.attributes["messaging.spitfire.outcome"], "dead");
    assert.equal(n.attributes["error.type"], "LookupError");
    assert.equal(n.status.code, 2 /* ERROR */);
    assert.match(n.status.message, /no job named "nobody"/);
    assert.deepEqual(n.events, []); // no exception: the worker refused it
  } finally {
    await worker.close(0);
    await running;
    await app.client.close();
  }
});

test("tracing: false, or no TracerProvider, makes no span at all", async () => {
  // The SDK loads the API with require: spy on that instance's getTracer (the ESM import above shares
  // its global state, not its objects).
  const cjs = createRequire(import.meta.url)("@opentelemetry/api");
  const getTracer = cjs.trace.getTracer;
  let calls = 0;
  cjs.trace.getTracer = (...args) => {
    calls++;
    return getTracer.apply(cjs.trace, args);
  };
  try {
    for (const [label, options, setup, traced] of [
      ["traced", {}, () => {}, true], // the control: the spy sees the tracer asked for
      ["tracing-false", { tracing: false }, () => {}, false],
      ["no-provider", {}, () => trace.disable(), false],
    ]) {
      setup();
      calls = 0;
      const queue = `ts-worker-untraced-${label}-${Date.now().toString(36)}`;
      const app = new App(server.url, options);
      let resolveRan;
      const ran = new Promise((r) => (resolveRan = r));
      app.job("plain", { queue }, (_p, ctx) => resolveRan(ctx.headers));
      const worker = app.worker({ concurrency: 1, handleSignals: false });
      const running = worker.run();
      try {
        const traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        await app.client.enqueue(queue, "plain", {}, { headers: { traceparent } });
        assert.equal((await ran).traceparent, traceparent);
        await worker.close();
        if (traced) assert.ok(calls >= 2, `${label}: a send and a process span (${calls} tracers asked for)`);
        else assert.equal(calls, 0, `${label}: no tracer asked for, no span made`);
      } finally {
        await worker.close(0);
        await running;
        await app.client.close();
      }
    }
  } finally {
    cjs.trace.getTracer = getTracer;
  }
});
