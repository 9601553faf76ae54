// OpenTelemetry across languages: a TypeScript producer's send span and a Python worker's process
// span share one trace (the W3C trace context rides in the job's headers).
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { propagation, trace } from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { Client } from "../dist/index.js";
import { run, SPITFIRE, startServer } from "./helpers.mjs";

const FIXTURES = fileURLToPath(new URL("./fixtures/", import.meta.url));
const exporter = new InMemorySpanExporter();
let server;
before(async () => {
  trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }));
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  server = await startServer();
});
after(async () => {
  await server?.stop();
  trace.disable();
  propagation.disable();
});

test("a TypeScript producer and a Python worker share one trace", async () => {
  const queue = `ts-traced-${Date.now().toString(36)}`;
  const client = new Client(server.url);
  const untraced = new Client(server.url, { tracing: false });
  try {
    exporter.reset();
    const id = await client.enqueue(queue, "traced", { n: 1 }, { headers: { tenant: "t1" } });
    await client.enqueueMany(queue, "traced", [{ n: 2 }]);
    const plain = await untraced.enqueue(queue, "traced", { n: 3 });
    const [send, sendMany] = exporter.getFinishedSpans();
    assert.equal(send.name, `send ${queue}`);
    assert.equal(send.attributes["messaging.message.id"], id.id);
    assert.equal(send.attributes["messaging.operation.type"], "send");
    assert.equal(sendMany.attributes["messaging.batch.message_count"], 1);
    assert.equal(exporter.getFinishedSpans().length, 2, "tracing: false makes no span");
    const { traceId, spanId } = send.spanContext();
    const job = await client.get(id);
    assert.equal(job.headers.tenant, "t1");
    assert.deepEqual(job.headers.traceparent.split("-").slice(1, 3), [traceId, spanId]);
    assert.equal((await client.get(plain)).headers?.traceparent, undefined);

    const out = join(mkdtempSync(join(tmpdir(), "spitfire-trace-")), "spans.json");
    const worker = await run(SPITFIRE, ["worker", "pytrace_app:app", "--burst", "--url", server.url], {
      cwd: FIXTURES,
      env: { SPANS_OUT: out, QUEUE: queue },
    });
    assert.equal(worker.code, 0, worker.stderr);
    const spans = JSON.parse(readFileSync(out, "utf8")).filter((s) => s.name === `process ${queue}`);
    assert.equal(spans.length, 3);
    const first = spans.find((s) => s.parent === spanId);
    assert.ok(first, `a process span whose parent is the send span: ${JSON.stringify(spans)}`);
    assert.equal(first.trace_id, traceId);
    assert.deepEqual(first.links, [spanId]);
    assert.ok(spans.some((s) => s.trace_id === sendMany.spanContext().traceId));
    assert.ok(spans.some((s) => s.parent === "" && s.trace_id !== traceId), "the untraced job: a root span");
  } finally {
    await client.close();
    await untraced.close();
  }
});
