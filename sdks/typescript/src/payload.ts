/**
 * Job payloads and results: msgpack, byte-compatible with the Python SDK (which uses msgspec).
 *
 * msgpackr is configured for interoperability, not for its own extensions: no records, maps of
 * minimal size, `undefined` as nil, 64-bit integers as `number` while safe and `bigint` past
 * 2^53 (in both directions), binary data as bin (decoded to a `Uint8Array`).
 */

import { Packr } from "msgpackr";

// `int64AsType: "auto"` (a number while safe, else a bigint) is implemented by msgpackr but
// missing from its type declarations, hence the cast.
const packr = new Packr({
  useRecords: false,
  moreTypes: false,
  variableMapSize: true,
  encodeUndefinedAsNil: true,
  int64AsType: "auto" as "bigint",
  mapsAsObjects: true,
});

/** msgpack nil: the payload of a job enqueued without one. */
export const NIL = new Uint8Array([0xc0]);

/** msgpack bytes of a value: objects, arrays, strings, numbers, bigints, booleans, null, Uint8Arrays, Dates. */
export function encodePayload(value: unknown): Uint8Array {
  return packr.pack(safeInts(value));
}

/** The value msgpack bytes hold; bytes that are not one msgpack value are returned as they are. */
export function decodePayload(data: Uint8Array): unknown {
  if (data.length === 0) return data;
  try {
    return plainBytes(packr.unpack(data));
  } catch {
    return data;
  }
}

/** The value msgpack bytes hold; throws if they are not exactly one msgpack value. */
export function strictDecodePayload(data: Uint8Array): unknown {
  return plainBytes(packr.unpack(data));
}

/** Integers from -2^63 to 2^64 - 1: the range of msgpack's int 64 and uint 64. */
const INT64_MIN = -(2 ** 63);
const UINT64_END = 2 ** 64;
/** msgpackr's own test for its 32-bit integer forms (fixint, int/uint 8, 16, 32). */
const fits32 = (n: number): boolean => n >>> 0 === n || n >> 0 === n;

/**
 * Integers are written as msgpack integers, never as floats (msgspec, in the Python SDK, refuses a
 * float where an `int` is declared). msgpackr writes a `number` past 32 bits as a float 64, so an
 * integral one is handed to it as a bigint, which it writes as an int 64 (a uint 64 from 2^63);
 * a bigint that fits 32 bits is handed to it as a number, for the smallest encoding. Either way
 * the value read back (here: `number` while safe, else `bigint`; in Python: `int`) is the one
 * given. A `String` object (a `JobId`) is written as the string it holds.
 */
const isPlain = (v: object): boolean => {
  const proto: unknown = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
};

function safeInts(value: unknown, depth = 0): unknown {
  if (depth > 100) return value;
  if (typeof value === "number") {
    if (!Number.isInteger(value) || fits32(value)) return value;
    return value >= INT64_MIN && value < UINT64_END ? BigInt(value) : value;
  }
  if (typeof value === "bigint") {
    const n = Number(value);
    return fits32(n) && BigInt(n) === value ? n : value;
  }
  if (Array.isArray(value)) return value.map((v: unknown) => safeInts(v, depth + 1));
  if (value instanceof String) return value.valueOf();
  if (value instanceof Map) {
    const out = new Map<unknown, unknown>();
    for (const [k, v] of value as Map<unknown, unknown>) out.set(safeInts(k, depth + 1), safeInts(v, depth + 1));
    return out;
  }
  if (value !== null && typeof value === "object" && isPlain(value)) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = safeInts(v, depth + 1);
    return out;
  }
  return value;
}

/** msgpackr decodes bin as a Node Buffer; hand out plain Uint8Arrays (what Bun and browsers have). */
function plainBytes(value: unknown, depth = 0): unknown {
  if (depth > 100) return value;
  if (value instanceof Uint8Array) {
    return Object.getPrototypeOf(value) === Uint8Array.prototype ? value : new Uint8Array(value);
  }
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) value[i] = plainBytes(value[i], depth + 1);
    return value;
  }
  if (value !== null && typeof value === "object" && !(value instanceof Date)) {
    const obj = value as Record<string, unknown>;
    for (const k of Object.keys(obj)) obj[k] = plainBytes(obj[k], depth + 1);
  }
  return value;
}
