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

/**
 * A bigint within the safe range is written as a plain integer (its smallest encoding, as Python
 * writes it) rather than as msgpackr's fixed 8-byte form; numbers past 2^53 that are integral are
 * written as integers, not floats (they are integers, even if imprecise).
 */
function safeInts(value: unknown, depth = 0): unknown {
  if (depth > 100) return value;
  if (typeof value === "bigint") {
    return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value;
  }
  if (typeof value === "number") {
    return Number.isInteger(value) && !Number.isSafeInteger(value) && Math.abs(value) < 2 ** 64 ? BigInt(value) : value;
  }
  if (Array.isArray(value)) return value.map((v: unknown) => safeInts(v, depth + 1));
  if (value !== null && typeof value === "object" && Object.getPrototypeOf(value) === Object.prototype) {
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
