/**
 * A small msgpack writer and reader for protocol bodies (not for job payloads: see payload.ts).
 *
 * The protocol needs byte-exact control that a general codec does not give: a `float` field is
 * always float 64 (`10.0` too), an `int` field takes its smallest encoding (unsigned families for
 * values >= 0), and headers are in their smallest form. The body schemas in codec.ts say which is
 * which; this module only writes and reads msgpack values.
 */

import { ProtocolError } from "./errors.js";

const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder("utf-8", { fatal: true });

/** Integers in this range decode as `number`; others as `bigint`. */
const SAFE_MAX = BigInt(Number.MAX_SAFE_INTEGER);
const SAFE_MIN = BigInt(Number.MIN_SAFE_INTEGER);

/** A growable byte buffer with msgpack writers. */
export class Writer {
  private buf: Uint8Array;
  private view: DataView;
  pos = 0;

  constructor(size = 256) {
    this.buf = new Uint8Array(size);
    this.view = new DataView(this.buf.buffer);
  }

  /** The bytes written so far (a view, valid until the next write). */
  bytes(): Uint8Array {
    return this.buf.subarray(0, this.pos);
  }

  ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }

  u8(v: number): void {
    this.ensure(1);
    this.buf[this.pos++] = v;
  }

  u32At(offset: number, v: number): void {
    this.view.setUint32(offset, v);
  }

  private head(byte: number, size: 1 | 2 | 4 | 8, v: number | bigint): void {
    this.ensure(1 + size);
    this.buf[this.pos++] = byte;
    if (size === 1) this.view.setUint8(this.pos, Number(v));
    else if (size === 2) this.view.setUint16(this.pos, Number(v));
    else if (size === 4) this.view.setUint32(this.pos, Number(v));
    else this.view.setBigUint64(this.pos, BigInt.asUintN(64, BigInt(v)));
    this.pos += size;
  }

  nil(): void {
    this.u8(0xc0);
  }

  bool(v: boolean): void {
    this.u8(v ? 0xc3 : 0xc2);
  }

  /** An integer in its smallest encoding: unsigned families for values >= 0. */
  int(v: number | bigint): void {
    if (typeof v === "number") {
      if (!Number.isInteger(v)) throw new TypeError(`expected an integer, got ${v}`);
      if (!Number.isSafeInteger(v)) v = BigInt(v);
    }
    if (typeof v === "bigint") {
      if (v >= SAFE_MIN && v <= SAFE_MAX) v = Number(v);
      else if (v > 0n) {
        if (v > 0xffffffffffffffffn) throw new RangeError(`integer ${v} does not fit in 64 bits`);
        this.head(0xcf, 8, v);
        return;
      } else {
        if (v < -(2n ** 63n)) throw new RangeError(`integer ${v} does not fit in 64 bits`);
        this.head(0xd3, 8, v);
        return;
      }
    }
    const n = v;
    if (n >= 0) {
      if (n < 0x80) this.u8(n);
      else if (n <= 0xff) this.head(0xcc, 1, n);
      else if (n <= 0xffff) this.head(0xcd, 2, n);
      else if (n <= 0xffffffff) this.head(0xce, 4, n);
      else this.head(0xcf, 8, BigInt(n));
    } else if (n >= -32) {
      this.u8(n & 0xff);
    } else if (n >= -128) {
      this.ensure(2);
      this.buf[this.pos++] = 0xd0;
      this.view.setInt8(this.pos++, n);
    } else if (n >= -32768) {
      this.ensure(3);
      this.buf[this.pos++] = 0xd1;
      this.view.setInt16(this.pos, n);
      this.pos += 2;
    } else if (n >= -2147483648) {
      this.ensure(5);
      this.buf[this.pos++] = 0xd2;
      this.view.setInt32(this.pos, n);
      this.pos += 4;
    } else {
      this.ensure(9);
      this.buf[this.pos++] = 0xd3;
      this.view.setBigInt64(this.pos, BigInt(n));
      this.pos += 8;
    }
  }

  /** Always float 64, as the protocol's encoders do. */
  float(v: number): void {
    this.ensure(9);
    this.buf[this.pos++] = 0xcb;
    this.view.setFloat64(this.pos, v);
    this.pos += 8;
  }

  str(v: string): void {
    // Fast path for short ASCII strings (queue names, job ids): no TextEncoder call.
    const len = v.length;
    if (len < 32) {
      let ascii = true;
      for (let i = 0; i < len; i++) {
        if (v.charCodeAt(i) > 0x7f) {
          ascii = false;
          break;
        }
      }
      if (ascii) {
        this.ensure(1 + len);
        this.buf[this.pos++] = 0xa0 | len;
        for (let i = 0; i < len; i++) this.buf[this.pos++] = v.charCodeAt(i);
        return;
      }
    }
    const data = utf8.encode(v);
    const n = data.length;
    if (n < 32) this.u8(0xa0 | n);
    else if (n <= 0xff) this.head(0xd9, 1, n);
    else if (n <= 0xffff) this.head(0xda, 2, n);
    else this.head(0xdb, 4, n);
    this.raw(data);
  }

  bin(v: Uint8Array): void {
    const n = v.length;
    if (n <= 0xff) this.head(0xc4, 1, n);
    else if (n <= 0xffff) this.head(0xc5, 2, n);
    else this.head(0xc6, 4, n);
    this.raw(v);
  }

  arrayHeader(n: number): void {
    if (n < 16) this.u8(0x90 | n);
    else if (n <= 0xffff) this.head(0xdc, 2, n);
    else this.head(0xdd, 4, n);
  }

  mapHeader(n: number): void {
    if (n < 16) this.u8(0x80 | n);
    else if (n <= 0xffff) this.head(0xde, 2, n);
    else this.head(0xdf, 4, n);
  }

  raw(v: Uint8Array): void {
    this.ensure(v.length);
    this.buf.set(v, this.pos);
    this.pos += v.length;
  }
}

/** A decoded msgpack value: maps are `Map`s (key order kept), bin is a `Uint8Array`. */
export type Value =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | Value[]
  | Map<Value, Value>;

/** Nesting deeper than this is refused (no input may exhaust the stack). */
const MAX_DEPTH = 64;

/** Reads exactly one msgpack value from `data`; trailing bytes or a truncated value are malformed. */
export function readValue(data: Uint8Array): Value {
  const r = new Reader(data);
  const v = r.value(0);
  if (r.pos !== data.length) throw new ProtocolError(`${data.length - r.pos} trailing bytes after the msgpack value`);
  return v;
}

class Reader {
  pos = 0;
  private readonly view: DataView;

  constructor(private readonly data: Uint8Array) {
    this.view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  }

  private need(n: number): number {
    const at = this.pos;
    if (at + n > this.data.length) throw new ProtocolError("truncated msgpack value");
    this.pos += n;
    return at;
  }

  private int64(at: number, signed: boolean): number | bigint {
    const v = signed ? this.view.getBigInt64(at) : this.view.getBigUint64(at);
    return v >= SAFE_MIN && v <= SAFE_MAX ? Number(v) : v;
  }

  private str(n: number): string {
    const at = this.need(n);
    try {
      return utf8Strict.decode(this.data.subarray(at, at + n));
    } catch {
      throw new ProtocolError("invalid UTF-8 in a msgpack str");
    }
  }

  private bin(n: number): Uint8Array {
    const at = this.need(n);
    return this.data.slice(at, at + n);
  }

  private array(n: number, depth: number): Value[] {
    const out: Value[] = [];
    for (let i = 0; i < n; i++) out.push(this.value(depth + 1));
    return out;
  }

  private map(n: number, depth: number): Map<Value, Value> {
    const out = new Map<Value, Value>();
    for (let i = 0; i < n; i++) {
      const k = this.value(depth + 1);
      out.set(k, this.value(depth + 1));
    }
    return out;
  }

  value(depth: number): Value {
    if (depth > MAX_DEPTH) throw new ProtocolError("msgpack value nested too deep");
    const b = this.data[this.need(1)] as number;
    if (b < 0x80) return b;
    if (b >= 0xe0) return b - 0x100;
    if (b < 0x90) return this.map(b & 0x0f, depth);
    if (b < 0xa0) return this.array(b & 0x0f, depth);
    if (b < 0xc0) return this.str(b & 0x1f);
    const v = this.view;
    switch (b) {
      case 0xc0:
        return null;
      case 0xc2:
        return false;
      case 0xc3:
        return true;
      case 0xc4:
        return this.bin(v.getUint8(this.need(1)));
      case 0xc5:
        return this.bin(v.getUint16(this.need(2)));
      case 0xc6:
        return this.bin(v.getUint32(this.need(4)));
      case 0xca:
        return v.getFloat32(this.need(4));
      case 0xcb:
        return v.getFloat64(this.need(8));
      case 0xcc:
        return v.getUint8(this.need(1));
      case 0xcd:
        return v.getUint16(this.need(2));
      case 0xce:
        return v.getUint32(this.need(4));
      case 0xcf:
        return this.int64(this.need(8), false);
      case 0xd0:
        return v.getInt8(this.need(1));
      case 0xd1:
        return v.getInt16(this.need(2));
      case 0xd2:
        return v.getInt32(this.need(4));
      case 0xd3:
        return this.int64(this.need(8), true);
      case 0xd9:
        return this.str(v.getUint8(this.need(1)));
      case 0xda:
        return this.str(v.getUint16(this.need(2)));
      case 0xdb:
        return this.str(v.getUint32(this.need(4)));
      case 0xdc:
        return this.array(v.getUint16(this.need(2)), depth);
      case 0xdd:
        return this.array(v.getUint32(this.need(4)), depth);
      case 0xde:
        return this.map(v.getUint16(this.need(2)), depth);
      case 0xdf:
        return this.map(v.getUint32(this.need(4)), depth);
      default:
        throw new ProtocolError(`msgpack type byte 0x${b.toString(16)} is not used by the protocol`);
    }
  }
}
