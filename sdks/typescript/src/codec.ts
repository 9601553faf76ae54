/**
 * The protocol's frames and message bodies (protocol/PROTOCOL.md), sans-I/O: bytes in, messages
 * out, and back. Bodies are described once, as schemas, and one encoder and one decoder walk
 * them: array bodies write every field in order (missing trailing fields decode to their
 * defaults, unknown trailing ones are ignored), map bodies are keyed by field name.
 *
 * Messages are plain objects keyed by the wire's own (snake_case) field names; the public
 * `Client` and `Worker` turn them into idiomatic TypeScript objects.
 */

import { ProtocolError, TooLarge } from "./errors.js";
import { readValue, type Value, Writer } from "./msgpack.js";

/** Frame header: u32 length, u8 type, u32 request id. */
export const HEADER_SIZE = 9;
/** Largest frame by default (the `length` field's value), until WELCOME says otherwise. */
export const DEFAULT_MAX_FRAME = 64 * 1024 * 1024;
/** Largest request id; ids wrap back to 1 after it (0 means "no answer"). */
export const MAX_REQUEST_ID = 0xffffffff;
/** The protocol version this SDK speaks. */
export const PROTOCOL_VERSION = 1;

/** Message type bytes (PROTOCOL.md section 6). */
export const MessageType = {
  HELLO: 0x01,
  PING: 0x02,
  ENQUEUE: 0x03,
  ENQUEUE_MANY: 0x04,
  GET: 0x05,
  CANCEL: 0x06,
  RETRY: 0x07,
  DELETE: 0x08,
  STATS: 0x09,
  PAUSE: 0x0a,
  RESUME: 0x0b,
  SUBSCRIBE: 0x0c,
  CREDIT: 0x0d,
  UNSUBSCRIBE: 0x0e,
  START: 0x0f,
  ACK: 0x10,
  FAIL: 0x11,
  HEARTBEAT: 0x12,
  RELEASE: 0x13,
  DELETE_QUEUE: 0x14,
  PUT_SCHEDULE: 0x15,
  GET_SCHEDULE: 0x16,
  LIST_SCHEDULES: 0x17,
  DELETE_SCHEDULE: 0x18,
  PAUSE_SCHEDULE: 0x19,
  RESUME_SCHEDULE: 0x1a,
  TRIGGER_SCHEDULE: 0x1b,
  LIST_WORKERS: 0x24,
  SET_DURABILITY: 0x25,
  PURGE: 0x26,
  LIST_JOBS: 0x27,
  REGISTER_JOBS: 0x28,
  LIST_JOB_DEFINITIONS: 0x29,
  PROGRESS: 0x2e,
  WAIT: 0x2f,
  WELCOME: 0x40,
  PONG: 0x41,
  OK: 0x42,
  ENQUEUED: 0x43,
  ENQUEUED_MANY: 0x44,
  JOB: 0x45,
  STATS_REPLY: 0x46,
  SUBSCRIBED: 0x47,
  DELIVER: 0x48,
  DONE: 0x49,
  HEARTBEAT_OK: 0x4a,
  CANCEL_JOBS: 0x4b,
  GOAWAY: 0x4c,
  SCHEDULE: 0x4d,
  SCHEDULES: 0x4e,
  WORKERS: 0x55,
  PURGED: 0x56,
  JOBS: 0x57,
  DEFINITIONS: 0x58,
  ERROR: 0x7f,
} as const;
export type MessageTypeName = keyof typeof MessageType;

const TYPE_NAMES = new Map<number, MessageTypeName>(
  Object.entries(MessageType).map(([k, v]) => [v, k as MessageTypeName]),
);

/** The name of a type byte, or undefined for an unknown one. */
export function typeName(type: number): MessageTypeName | undefined {
  return TYPE_NAMES.get(type);
}

// --- schemas ---------------------------------------------------------------------------------

/** A field's wire type. */
export type Schema =
  | "int"
  | "float"
  | "bool"
  | "str"
  | "bytes"
  | { opt: Schema }
  | { arr: Schema }
  | { map: Schema } // {str: T}
  | { struct: Field[] } // an array of fields in order
  | { record: Field[] }; // a map keyed by field name

/** A marker for a field without a default: missing from the wire, the body is malformed. */
export const REQUIRED: unique symbol = Symbol("required");
/** A marker for a key of a map body left out while it is null (a key added after 1.0). */
export const OMIT_NULL: unique symbol = Symbol("omit-null");
/**
 * `[name, type, default, OMIT_NULL?]`; an optional type (`{opt}`) defaults to null unless given.
 * `OMIT_NULL` (map bodies only): the key is not written while its value is null.
 */
export type Field = readonly [name: string, type: Schema, dflt?: unknown, omit?: typeof OMIT_NULL];

const opt = (s: Schema): Schema => ({ opt: s });
const arr = (s: Schema): Schema => ({ arr: s });
const strMap = (s: Schema): Schema => ({ map: s });
const struct = (fields: Field[]): Schema => ({ struct: fields });
const record = (fields: Field[]): Schema => ({ record: fields });

const BACKOFF_FIELDS: Field[] = [
  ["kind", "str", "exponential"],
  ["base", "float", 1.0],
  ["factor", "float", 2.0],
  ["cap", "float", 3600.0],
  ["jitter", "bool", false],
  ["delays", opt(arr("float"))],
];
const BACKOFF = struct(BACKOFF_FIELDS);
const HEADERS = opt(strMap("str"));

const JOB_INFO = record([
  ["id", "str", REQUIRED],
  ["queue", "str", REQUIRED],
  ["name", "str", REQUIRED],
  ["payload", "bytes", REQUIRED],
  ["state", "str", REQUIRED],
  ["priority", "int", 0],
  ["created_at", "float", 0.0],
  ["updated_at", "float", 0.0],
  ["run_at", opt("float")],
  ["attempts", "int", 0],
  ["max_attempts", "int", 0],
  ["backoff", opt(BACKOFF)],
  ["timeout", "float", 0.0],
  ["idempotency_key", opt("str")],
  ["headers", HEADERS],
  [
    "errors",
    arr(
      record([
        ["attempt", "int", 0],
        ["at", "float", 0.0],
        ["error", "str", ""],
        ["traceback", opt("str")],
      ]),
    ),
    [],
  ],
  ["result", opt("bytes")],
  [
    "history",
    arr(
      record([
        ["state", "str", ""],
        ["at", "float", 0.0],
      ]),
    ),
    [],
  ],
  ["lease_until", opt("float")],
  ["worker", opt("str")],
  [
    "progress",
    opt(
      record([
        ["value", opt("float")],
        ["message", opt("str")],
        ["at", "float", REQUIRED],
      ]),
    ),
    null,
    OMIT_NULL,
  ],
]);

const QUEUE_INFO = record([
  ["name", "str", REQUIRED],
  ["paused", "bool", false],
  ["durability", "str", ""],
  ["counts", strMap("int"), {}],
  ["total", "int", 0],
]);

const STATS_INFO = record([
  ["total_jobs", "int", REQUIRED],
  ["queues", arr(QUEUE_INFO), REQUIRED],
  ["workers", "int", 0],
  ["connections", "int", 0],
]);

const SCHEDULE_OPTIONS_FIELDS: Field[] = [
  ["priority", "int", 0],
  ["max_attempts", opt("int")],
  ["backoff", opt(BACKOFF)],
  ["timeout", opt("float")],
  ["headers", HEADERS],
];
const SCHEDULE_OPTIONS = struct(SCHEDULE_OPTIONS_FIELDS);
const SCHEDULE_OPTIONS_DEFAULT = { priority: 0, max_attempts: null, backoff: null, timeout: null, headers: null };

const SCHEDULE_INFO = record([
  ["name", "str", REQUIRED],
  ["cron", "str", REQUIRED],
  ["timezone", "str", "UTC"],
  ["queue", "str", REQUIRED],
  ["job", "str", REQUIRED],
  ["payload", "bytes", new Uint8Array([0x80])],
  ["options", SCHEDULE_OPTIONS, SCHEDULE_OPTIONS_DEFAULT],
  ["misfire", "str", "skip"],
  ["paused", "bool", false],
  ["created_at", "float", 0.0],
  ["updated_at", "float", 0.0],
  ["next_run_at", opt("float")],
  ["last_run_at", opt("float")],
  ["last_job_id", opt("str")],
  ["last_job_state", opt("str")],
]);

const WORKER_INFO = record([
  ["id", "str", REQUIRED],
  ["name", "str", REQUIRED],
  ["queues", arr("str"), REQUIRED],
  ["held", "int", REQUIRED],
  ["active", "bool", REQUIRED],
  ["credits", "int", REQUIRED],
  ["connected_at", "float", REQUIRED],
  ["last_seen", "float", REQUIRED],
  ["host", opt("str")],
  ["pid", opt("int")],
  ["concurrency", opt("int")],
]);

const JOB_DEFINITION_SPEC = struct([
  ["name", "str", REQUIRED],
  ["queue", opt("str")],
  ["priority", "int", 0],
  ["max_attempts", opt("int")],
  ["backoff", opt(BACKOFF)],
  ["timeout", opt("float")],
  ["schema", opt("str")],
  ["validate", "bool", false],
]);

const JOB_DEFINITION_INFO = record([
  ["name", "str", REQUIRED],
  ["queue", opt("str")],
  ["priority", "int", 0],
  ["max_attempts", opt("int")],
  ["backoff", opt(BACKOFF)],
  ["timeout", opt("float")],
  ["schema", opt("str")],
  ["validate", "bool", false],
  ["registered_by", "str", ""],
  ["created_at", "float", 0.0],
  ["updated_at", "float", 0.0],
]);

const JOB_REF: Field[] = [["job_id", "str", REQUIRED]];
const QUEUE_REF: Field[] = [["queue", opt("str")]];
const SCHEDULE_REF: Field[] = [["name", "str", REQUIRED]];
const JOB_IDS: Field[] = [["job_ids", arr("str"), REQUIRED]];

/** Every message body, as the fields of its array (PROTOCOL.md section 6). */
export const BODIES: Record<MessageTypeName, Field[]> = {
  HELLO: [
    ["version", "int", PROTOCOL_VERSION],
    ["client", "str", ""],
    ["token", opt("str")],
  ],
  PING: [],
  ENQUEUE: [
    ["queue", "str", REQUIRED],
    ["name", "str", REQUIRED],
    ["payload", "bytes", REQUIRED],
    ["priority", "int", 0],
    ["delay", opt("float")],
    ["run_at", opt("float")],
    ["max_attempts", opt("int")],
    ["backoff", opt(BACKOFF)],
    ["timeout", opt("float")],
    ["idempotency_key", opt("str")],
    ["headers", HEADERS],
    ["request_token", opt("bytes")],
  ],
  ENQUEUE_MANY: [
    ["queue", "str", REQUIRED],
    ["name", "str", REQUIRED],
    ["payloads", arr("bytes"), REQUIRED],
    ["priority", "int", 0],
    ["delay", opt("float")],
    ["run_at", opt("float")],
    ["max_attempts", opt("int")],
    ["backoff", opt(BACKOFF)],
    ["timeout", opt("float")],
    ["idempotency_keys", opt(arr(opt("str")))],
    ["headers", HEADERS],
    ["request_token", opt("bytes")],
  ],
  GET: JOB_REF,
  CANCEL: JOB_REF,
  RETRY: JOB_REF,
  DELETE: JOB_REF,
  STATS: QUEUE_REF,
  PAUSE: QUEUE_REF,
  RESUME: QUEUE_REF,
  SUBSCRIBE: [
    ["queues", arr("str"), REQUIRED],
    ["credits", "int", REQUIRED],
    ["name", "str", ""],
    ["host", "str", ""],
    ["pid", "int", 0],
    ["concurrency", "int", 0],
    ["resume", opt("str")],
  ],
  CREDIT: [["credits", "int", REQUIRED]],
  UNSUBSCRIBE: [],
  START: JOB_IDS,
  ACK: [
    [
      "items",
      arr(
        struct([
          ["job_id", "str", REQUIRED],
          ["result", opt("bytes")],
        ]),
      ),
      REQUIRED,
    ],
  ],
  FAIL: [
    [
      "items",
      arr(
        struct([
          ["job_id", "str", REQUIRED],
          ["error", "str", REQUIRED],
          ["traceback", opt("str")],
          ["retryable", "bool", true],
          ["retry_at", opt("float")],
        ]),
      ),
      REQUIRED,
    ],
  ],
  HEARTBEAT: [
    ["job_ids", opt(arr("str"))],
    ["seconds", opt("float")],
  ],
  RELEASE: JOB_IDS,
  DELETE_QUEUE: [
    ["queue", "str", REQUIRED],
    ["force", "bool", false],
  ],
  PUT_SCHEDULE: [
    ["name", "str", REQUIRED],
    ["cron", "str", REQUIRED],
    ["queue", "str", REQUIRED],
    ["job", "str", REQUIRED],
    ["timezone", "str", "UTC"],
    ["payload", opt("bytes")],
    ["options", SCHEDULE_OPTIONS, SCHEDULE_OPTIONS_DEFAULT],
    ["misfire", "str", "skip"],
    ["replace", "bool", false],
  ],
  GET_SCHEDULE: SCHEDULE_REF,
  LIST_SCHEDULES: [],
  DELETE_SCHEDULE: SCHEDULE_REF,
  PAUSE_SCHEDULE: SCHEDULE_REF,
  RESUME_SCHEDULE: SCHEDULE_REF,
  TRIGGER_SCHEDULE: SCHEDULE_REF,
  LIST_WORKERS: [],
  SET_DURABILITY: [
    ["queue", "str", REQUIRED],
    ["mode", "str", REQUIRED],
  ],
  PURGE: [
    ["queue", "str", REQUIRED],
    ["states", arr("str"), REQUIRED],
  ],
  LIST_JOBS: [
    ["queue", opt("str")],
    ["states", opt(arr("str"))],
    ["limit", "int", 50],
    ["cursor", opt("str")],
    ["newest_first", "bool", true],
  ],
  REGISTER_JOBS: [["definitions", arr(JOB_DEFINITION_SPEC), REQUIRED]],
  LIST_JOB_DEFINITIONS: [],
  PROGRESS: [
    ["job_id", "str", REQUIRED],
    ["value", opt("float")],
    ["message", opt("str")],
  ],
  WAIT: [
    ["job_id", "str", REQUIRED],
    ["timeout", "float", 30.0],
  ],
  WELCOME: [
    ["version", "int", REQUIRED],
    ["server", "str", REQUIRED],
    ["max_frame", "int", REQUIRED],
    ["max_payload", "int", REQUIRED],
    ["heartbeat_interval", "float", REQUIRED],
  ],
  PONG: [],
  OK: [],
  ENQUEUED: [
    ["job_id", "str", REQUIRED],
    ["created", "bool", REQUIRED],
    ["state", "str", REQUIRED],
  ],
  ENQUEUED_MANY: [
    ["job_ids", arr("str"), REQUIRED],
    ["created", arr("bool"), REQUIRED],
  ],
  JOB: [["job", JOB_INFO, REQUIRED]],
  STATS_REPLY: [["stats", STATS_INFO, REQUIRED]],
  SUBSCRIBED: [["worker_id", "str", REQUIRED]],
  DELIVER: [
    [
      "jobs",
      arr(
        struct([
          ["job_id", "str", REQUIRED],
          ["queue", "str", REQUIRED],
          ["name", "str", REQUIRED],
          ["payload", "bytes", REQUIRED],
          ["attempt", "int", REQUIRED],
          ["max_attempts", "int", REQUIRED],
          ["timeout", "float", REQUIRED],
          ["headers", HEADERS],
          ["created_at", "float", 0.0],
          ["priority", "int", 0],
        ]),
      ),
      REQUIRED,
    ],
  ],
  DONE: [
    [
      "errors",
      arr(
        struct([
          ["index", "int", REQUIRED],
          ["code", "str", REQUIRED],
          ["message", "str", REQUIRED],
        ]),
      ),
      [],
    ],
  ],
  HEARTBEAT_OK: [["extended", "int", REQUIRED]],
  CANCEL_JOBS: JOB_IDS,
  GOAWAY: [["reason", "str", REQUIRED]],
  SCHEDULE: [
    ["schedule", SCHEDULE_INFO, REQUIRED],
    ["created", "bool", false],
  ],
  SCHEDULES: [["schedules", arr(SCHEDULE_INFO), REQUIRED]],
  WORKERS: [["workers", arr(WORKER_INFO), REQUIRED]],
  PURGED: [
    ["matched", "int", REQUIRED],
    ["deleted", "int", REQUIRED],
    ["failed", "int", REQUIRED],
  ],
  JOBS: [
    ["jobs", arr(JOB_INFO), REQUIRED],
    ["cursor", opt("str")],
  ],
  DEFINITIONS: [["definitions", arr(JOB_DEFINITION_INFO), REQUIRED]],
  ERROR: [
    ["code", "str", REQUIRED],
    ["message", "str", REQUIRED],
    ["field", opt("str")],
    ["retry_after", opt("float")],
  ],
};

/** A message body: its fields by wire name. */
export type Body = Record<string, unknown>;

// --- encoding --------------------------------------------------------------------------------

function defaultOf(field: Field, where: string): unknown {
  const [name, type, dflt] = field;
  if (dflt === REQUIRED) throw new TypeError(`${where}: the field ${name} is required`);
  if (dflt !== undefined) return dflt;
  if (typeof type === "object" && "opt" in type) return null;
  throw new TypeError(`${where}: the field ${name} is required`);
}

function encodeValue(w: Writer, schema: Schema, value: unknown, where: string): void {
  if (typeof schema === "string") {
    switch (schema) {
      case "int":
        if (typeof value !== "number" && typeof value !== "bigint") throw new TypeError(`${where}: expected an integer`);
        w.int(value);
        return;
      case "float":
        if (typeof value !== "number" && typeof value !== "bigint") throw new TypeError(`${where}: expected a number`);
        w.float(Number(value));
        return;
      case "bool":
        if (typeof value !== "boolean") throw new TypeError(`${where}: expected a boolean`);
        w.bool(value);
        return;
      case "str":
        if (typeof value !== "string") throw new TypeError(`${where}: expected a string`);
        w.str(value);
        return;
      case "bytes":
        if (!(value instanceof Uint8Array)) throw new TypeError(`${where}: expected a Uint8Array`);
        w.bin(value);
        return;
    }
  }
  if ("opt" in schema) {
    if (value === null || value === undefined) w.nil();
    else encodeValue(w, schema.opt, value, where);
  } else if ("arr" in schema) {
    if (!Array.isArray(value)) throw new TypeError(`${where}: expected an array`);
    w.arrayHeader(value.length);
    for (const item of value) encodeValue(w, schema.arr, item, where);
  } else if ("map" in schema) {
    if (typeof value !== "object" || value === null) throw new TypeError(`${where}: expected an object`);
    const entries = value instanceof Map ? [...(value as Map<string, unknown>)] : Object.entries(value);
    w.mapHeader(entries.length);
    for (const [k, v] of entries) {
      w.str(k);
      encodeValue(w, schema.map, v, `${where}.${k}`);
    }
  } else if ("struct" in schema) {
    encodeFields(w, schema.struct, value, where, false);
  } else {
    encodeFields(w, schema.record, value, where, true);
  }
}

const isNil = (v: unknown): boolean => v === null || v === undefined;

function encodeFields(w: Writer, fields: Field[], value: unknown, where: string, keyed: boolean): void {
  if (typeof value !== "object" || value === null) throw new TypeError(`${where}: expected an object`);
  const obj = value as Body;
  if (keyed) {
    let n = fields.length;
    for (const f of fields) if (f[3] === OMIT_NULL && isNil(obj[f[0]])) n--;
    w.mapHeader(n);
  } else {
    w.arrayHeader(fields.length);
  }
  for (const field of fields) {
    const name = field[0];
    let v = obj[name];
    if (keyed && field[3] === OMIT_NULL && isNil(v)) continue;
    if (v === undefined) v = defaultOf(field, where);
    if (keyed) w.str(name);
    encodeValue(w, field[1], v, `${where}.${name}`);
  }
}

/**
 * Appends one whole frame (header and body) to `w`. Every field is written, in order; a field
 * left out of `body` takes its default (a required one throws a TypeError).
 */
export function writeFrame(w: Writer, type: number, requestId: number, body: Body): void {
  const name = typeName(type);
  if (name === undefined) throw new TypeError(`unknown message type 0x${type.toString(16)}`);
  const start = w.pos;
  w.ensure(HEADER_SIZE);
  w.pos += HEADER_SIZE;
  encodeFields(w, BODIES[name], body, name, false);
  w.u32At(start, w.pos - start - 4);
  w.bytes()[start + 4] = type;
  w.u32At(start + 5, requestId);
}

/** One frame as a fresh Uint8Array. */
export function encodeFrame(type: number, requestId: number, body: Body): Uint8Array {
  const w = new Writer();
  writeFrame(w, type, requestId, body);
  return w.bytes().slice();
}

// --- decoding --------------------------------------------------------------------------------

function malformed(where: string, what: string): ProtocolError {
  return new ProtocolError(`malformed ${where}: ${what}`);
}

function decodeValue(schema: Schema, v: Value, where: string): unknown {
  if (typeof schema === "string") {
    switch (schema) {
      case "int":
        if (typeof v === "number" && Number.isInteger(v)) return v;
        if (typeof v === "bigint") return v;
        throw malformed(where, "expected an integer");
      case "float":
        if (typeof v === "number") return v;
        if (typeof v === "bigint") return Number(v);
        throw malformed(where, "expected a number");
      case "bool":
        if (typeof v === "boolean") return v;
        throw malformed(where, "expected a boolean");
      case "str":
        if (typeof v === "string") return v;
        throw malformed(where, "expected a string");
      case "bytes":
        if (v instanceof Uint8Array) return v;
        throw malformed(where, "expected bytes");
    }
  }
  if ("opt" in schema) return v === null ? null : decodeValue(schema.opt, v, where);
  if ("arr" in schema) {
    if (!Array.isArray(v)) throw malformed(where, "expected an array");
    return v.map((item) => decodeValue(schema.arr, item, where));
  }
  if ("map" in schema) {
    if (!(v instanceof Map)) throw malformed(where, "expected a map");
    const out: Record<string, unknown> = {};
    for (const [k, item] of v) {
      if (typeof k !== "string") throw malformed(where, "expected str keys");
      out[k] = decodeValue(schema.map, item, `${where}.${k}`);
    }
    return out;
  }
  if ("struct" in schema) {
    if (!Array.isArray(v)) throw malformed(where, "expected an array");
    return decodeFields(schema.struct, (i) => (i < v.length ? v[i] : undefined), where);
  }
  if (!(v instanceof Map)) throw malformed(where, "expected a map");
  const fields = schema.record;
  return decodeFields(fields, (i) => v.get((fields[i] as Field)[0]), where);
}

function decodeFields(fields: Field[], get: (i: number) => Value | undefined, where: string): Body {
  const out: Body = {};
  for (let i = 0; i < fields.length; i++) {
    const field = fields[i] as Field;
    const raw = get(i);
    if (raw === undefined) {
      if (field[2] === REQUIRED) throw malformed(where, `the field ${field[0]} is missing`);
      out[field[0]] = field[2] === undefined ? null : field[2];
    } else {
      out[field[0]] = decodeValue(field[1], raw, `${where}.${field[0]}`);
    }
  }
  return out;
}

/** Decodes a body of the given type (shorter and longer arrays accepted, section 11). */
export function decodeBody(type: number, body: Uint8Array): Body {
  const name = typeName(type);
  if (name === undefined) throw new ProtocolError(`unknown message type 0x${type.toString(16)}`);
  return decodeValue({ struct: BODIES[name] }, readValue(body), name) as Body;
}

/** One frame read off the stream. */
export interface Frame {
  type: number;
  requestId: number;
  body: Uint8Array;
}

/**
 * Reassembles frames from any split of the byte stream. `push` a chunk, get every frame it
 * completes. A `length` outside 5..maxFrame throws (the stream cannot be resynchronised).
 */
export class FrameReader {
  private buf: Buffer = Buffer.alloc(0);
  maxFrame: number;

  constructor(maxFrame = DEFAULT_MAX_FRAME) {
    this.maxFrame = maxFrame;
  }

  push(chunk: Uint8Array): Frame[] {
    this.buf = this.buf.length === 0 ? Buffer.from(chunk) : Buffer.concat([this.buf, chunk]);
    const frames: Frame[] = [];
    let at = 0;
    while (this.buf.length - at >= 4) {
      const length = this.buf.readUInt32BE(at);
      if (length < 5) throw new ProtocolError(`frame length ${length} is below 5`);
      if (length > this.maxFrame) throw new TooLarge(`frame length ${length} is over the limit ${this.maxFrame}`);
      if (this.buf.length - at < 4 + length) break;
      frames.push({
        type: this.buf[at + 4] as number,
        requestId: this.buf.readUInt32BE(at + 5),
        // A copy: the body's bytes (payloads) outlive this buffer.
        body: Uint8Array.prototype.slice.call(this.buf, at + HEADER_SIZE, at + 4 + length),
      });
      at += 4 + length;
    }
    this.buf = at === this.buf.length ? Buffer.alloc(0) : this.buf.subarray(at);
    return frames;
  }

  /** Bytes received that do not make a whole frame yet. */
  get pending(): number {
    return this.buf.length;
  }
}
