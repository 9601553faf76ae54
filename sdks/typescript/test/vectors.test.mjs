// Every golden frame of protocol/vectors/vectors.json: decode `hex` and compare with `body`, encode
// `body` and compare with `hex` byte for byte.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { BODIES, decodeBody, encodeFrame, FrameReader, MessageType } from "../dist/codec.js";

const file = fileURLToPath(new URL("../../../protocol/vectors/vectors.json", import.meta.url));
const { vectors } = JSON.parse(readFileSync(file, "utf8"));

const hex = (b) => Buffer.from(b).toString("hex");

/** The JSON description of a body (bytes as hex) as the codec's message (bytes as Uint8Array). */
function fromJson(schema, v) {
  if (v === null) return null;
  if (typeof schema === "string") return schema === "bytes" ? new Uint8Array(Buffer.from(v, "hex")) : v;
  if ("opt" in schema) return fromJson(schema.opt, v);
  if ("arr" in schema) return v.map((x) => fromJson(schema.arr, x));
  if ("map" in schema) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, fromJson(schema.map, x)]));
  const fields = schema.struct ?? schema.record;
  return Object.fromEntries(fields.map(([name, type]) => [name, fromJson(type, v[name])]));
}

/** The codec's message back to the JSON description. */
function toJson(v) {
  if (v instanceof Uint8Array) return hex(v);
  if (Array.isArray(v)) return v.map(toJson);
  if (typeof v === "bigint") return Number(v);
  if (v !== null && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, toJson(x)]));
  return v;
}

test("the vectors cover every message type", () => {
  const seen = new Set(vectors.map((v) => v.type));
  for (const name of Object.keys(MessageType)) assert.ok(seen.has(name), `no vector for ${name}`);
});

test("the SDK speaks every message type of the vectors", () => {
  const unknown = [...new Set(vectors.map((v) => v.type).filter((t) => !(t in MessageType)))];
  assert.deepEqual(unknown, []);
});

for (const v of vectors) {
  test(`vector ${v.name}`, () => {
    assert.equal(MessageType[v.type], v.type_byte);
    const frames = new FrameReader().push(Buffer.from(v.hex, "hex"));
    assert.equal(frames.length, 1);
    const [frame] = frames;
    assert.equal(frame.type, v.type_byte);
    assert.equal(frame.requestId, v.request_id);
    const decoded = decodeBody(frame.type, frame.body);
    assert.deepEqual(toJson(decoded), v.body);
    const message = fromJson({ struct: BODIES[v.type] }, v.body);
    assert.equal(hex(encodeFrame(v.type_byte, v.request_id, message)), v.hex);
    // Re-encoding what was decoded gives the same bytes too.
    assert.equal(hex(encodeFrame(v.type_byte, v.request_id, decoded)), v.hex);
  });
}

test("frames split at every byte and many frames in one chunk", () => {
  const all = Buffer.concat(vectors.map((v) => Buffer.from(v.hex, "hex")));
  const reader = new FrameReader();
  const frames = [];
  for (let i = 0; i < all.length; i += 7) frames.push(...reader.push(all.subarray(i, i + 7)));
  assert.equal(frames.length, vectors.length);
  assert.equal(reader.pending, 0);
  assert.deepEqual(new FrameReader().push(all).map((f) => f.requestId), vectors.map((v) => v.request_id));
});

test("shorter and longer array bodies decode (versioning)", () => {
  // ENQUEUE as a 5-element array (PROTOCOL.md section 13) and with two unknown trailing fields.
  const short = Buffer.from("95a6656d61696c73aa73656e645f656d61696cc40a81a2746fa56140622e6305cb4004000000000000", "hex");
  const body = decodeBody(MessageType.ENQUEUE, short);
  assert.equal(body.priority, 5);
  assert.equal(body.delay, 2.5);
  assert.equal(body.headers, null);
  const longer = Buffer.from("9301a0c0c3c0", "hex");
  longer[0] = 0x95;
  assert.deepEqual(decodeBody(MessageType.HELLO, longer), { version: 1, client: "", token: null });
  assert.throws(() => decodeBody(MessageType.GET, Buffer.from("90", "hex")), /job_id is missing/);
  assert.throws(() => decodeBody(MessageType.PING, Buffer.from("9090", "hex")), /trailing/);
  assert.throws(() => decodeBody(MessageType.GET, Buffer.from("91a3ff", "hex")), /truncated/);
});

test("a frame length outside 5..max_frame is refused", () => {
  assert.throws(() => new FrameReader().push(Buffer.from("0000000401", "hex")), /below 5/);
  assert.throws(() => new FrameReader(100).push(Buffer.from("0000006501", "hex")), /over the limit/);
});

test("integers: number while safe, bigint past 2^53, smallest encoding", () => {
  for (const [n, h] of [[0, "00"], [127, "7f"], [128, "cc80"], [65536, "ce00010000"], [-1, "ff"], [-33, "d0df"],
    [2 ** 53 - 1, "cf001fffffffffffff"], [2n ** 53n + 1n, "cf0020000000000001"], [-(2n ** 63n), "d38000000000000000"],
    [2n ** 64n - 1n, "cfffffffffffffffff"]]) {
    const frame = encodeFrame(MessageType.CREDIT, 0, { credits: n });
    assert.equal(hex(frame.subarray(10)), h, String(n));
    assert.equal(decodeBody(MessageType.CREDIT, frame.subarray(9)).credits, typeof n === "bigint" && n >= -(2n ** 53n) && n < 2n ** 53n ? Number(n) : n);
  }
});
