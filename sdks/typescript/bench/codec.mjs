// Encode/decode of a ~100-byte payload with msgpackr and @msgpack/msgpack (how the codec was picked).
import { Packr } from "msgpackr";
import { Encoder, Decoder } from "@msgpack/msgpack";
const value = { to: "someone@example.com", subject: "Welcome to Spitfire", user_id: 123456789, tags: ["new", "eu"], retry: true, score: 0.75 };
const packr = new Packr({ useRecords: false, int64AsType: "auto", encodeUndefinedAsNil: true, variableMapSize: true });
const enc = new Encoder({ useBigInt64: true }), dec = new Decoder({ useBigInt64: true });
const N = 300_000;
function time(label, fn) {
  for (let i = 0; i < 20_000; i++) fn();
  const t = process.hrtime.bigint();
  for (let i = 0; i < N; i++) fn();
  const ns = Number(process.hrtime.bigint() - t) / N;
  console.log(`${label.padEnd(28)} ${ns.toFixed(0)} ns/op`);
}
const a = packr.pack(value), b = enc.encode(value);
console.log("payload bytes", a.length, b.length);
time("msgpackr encode", () => packr.pack(value));
time("msgpackr decode", () => packr.unpack(a));
time("@msgpack/msgpack encode", () => enc.encode(value));
time("@msgpack/msgpack decode", () => dec.decode(b));
