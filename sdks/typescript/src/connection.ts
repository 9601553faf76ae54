/**
 * One session over TCP: the HELLO/WELCOME handshake, pipelined requests matched to answers by
 * request id, frames batched into one write per event-loop turn, request timeouts, and server
 * pushes (DELIVER, CANCEL_JOBS, GOAWAY) handed to a callback. Reconnection lives one level up
 * (`Client`, `Worker`): a Connection is one socket and dies with it.
 *
 * QUIC is not offered: Node's QUIC (`node:quic`) is experimental and behind a flag in Node 23+
 * and absent in Node 20, and Bun has none; TCP is the portable transport.
 */

import * as net from "node:net";
import * as os from "node:os";

import {
  type Body,
  decodeBody,
  DEFAULT_MAX_FRAME,
  type Frame,
  FrameReader,
  MAX_REQUEST_ID,
  MessageType,
  PROTOCOL_VERSION,
  typeName,
  writeFrame,
} from "./codec.js";
import {
  ClientClosed,
  ConnectionLost,
  errorFromWire,
  InvalidURL,
  NotConnected,
  type NotFoundKind,
  ProtocolError,
  RequestTimeout,
  SpitfireError,
} from "./errors.js";
import { Writer } from "./msgpack.js";

/** The SDK's name and version, sent in HELLO.client. */
export const SDK_VERSION = "0.1.0";
/** Used when neither a URL nor `SPITFIRE_URL` is given (the server's default `--listen`). */
export const DEFAULT_URL = "tcp://127.0.0.1:7878";
export const DEFAULT_PORT = 7878;

/** Where a server listens. */
export interface Endpoint {
  host: string;
  port: number;
}

/** Parses `tcp://host[:port]` (null: `SPITFIRE_URL`, else the default). */
export function parseUrl(url?: string | null): Endpoint {
  const text = (url ?? process.env.SPITFIRE_URL ?? DEFAULT_URL).trim();
  const m = /^([a-zA-Z]+):\/\/(.*?)\/?$/.exec(text);
  if (!m) throw new InvalidURL(`server URL ${JSON.stringify(text)} has no scheme: write tcp://${text}`);
  const scheme = (m[1] as string).toLowerCase();
  const rest = m[2] as string;
  if (scheme === "quic") {
    throw new InvalidURL(
      `server URL ${JSON.stringify(text)}: this SDK speaks TCP only (Node's QUIC is experimental); use tcp://`,
    );
  }
  if (scheme !== "tcp") throw new InvalidURL(`server URL ${JSON.stringify(text)}: the scheme must be tcp://`);
  if (/[/?@]/.test(rest)) throw new InvalidURL(`server URL ${JSON.stringify(text)}: only tcp://host:port is allowed`);
  let host = rest;
  let port = DEFAULT_PORT;
  const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(rest);
  if (v6) {
    host = v6[1] as string;
    if (v6[2] !== undefined) port = Number(v6[2]);
  } else if (rest.includes(":")) {
    const i = rest.lastIndexOf(":");
    host = rest.slice(0, i);
    port = Number(rest.slice(i + 1));
  }
  if (!host || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new InvalidURL(`server URL ${JSON.stringify(text)}: expected tcp://host:port with a port in 1..65535`);
  }
  return { host, port };
}

/** Addresses one client may list at most (a cluster has a handful of members). */
export const MAX_ADDRESSES = 16;

/**
 * Parses one URL, a URL listing a cluster's members (`tcp://h1:p1,h2:p2,h3:p3`) or a list of URLs
 * (null: `SPITFIRE_URL`, else the default). Duplicates are dropped, the order is kept.
 */
export function parseUrls(url?: string | readonly string[] | null): Endpoint[] {
  let found: Endpoint[];
  let text: string;
  if (Array.isArray(url)) {
    if (url.length === 0) throw new InvalidURL("no server URL given: pass a URL, e.g. tcp://127.0.0.1:7878, or a list of them");
    found = url.flatMap((u: string) => parseUrls(u));
    text = url.join(",");
  } else {
    text = ((url as string | null | undefined) ?? process.env.SPITFIRE_URL ?? DEFAULT_URL).trim();
    const m = /^([a-zA-Z]+):\/\/(.*)$/.exec(text);
    if (!m || !(m[2] as string).includes(",")) return [parseUrl(text)];
    const parts = (m[2] as string).split(",").map((p) => p.trim());
    if (parts.some((p) => p === "")) {
      throw new InvalidURL(`server URL ${JSON.stringify(text)} has an empty address: write tcp://h1:p1,h2:p2`);
    }
    found = parts.map((p) => parseUrl(`${m[1] as string}://${p}`));
  }
  const seen = new Set<string>();
  const endpoints = found.filter((e) => {
    const k = `${e.host}|${e.port}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
  if (endpoints.length > MAX_ADDRESSES) {
    throw new InvalidURL(`server URL ${JSON.stringify(text)} lists ${endpoints.length} addresses; at most ${MAX_ADDRESSES}`);
  }
  return endpoints;
}

/** `host:port` of an endpoint (IPv6 in brackets). */
export function hostPort(e: Endpoint): string {
  return `${e.host.includes(":") ? `[${e.host}]` : e.host}:${e.port}`;
}

/** What the server said in WELCOME. */
export interface Welcome {
  version: number;
  server: string;
  max_frame: number;
  max_payload: number;
  heartbeat_interval: number;
}

/** An answer: its type and decoded body. */
export interface Answer {
  type: number;
  body: Body;
}

export interface ConnectionOptions {
  endpoint: Endpoint;
  /** The server's auth token (HELLO.token). */
  authToken?: string | null | undefined;
  /** How long connecting plus the handshake may take. */
  connectTimeoutMs: number;
  /** Called with every server push (request id 0, other than ERROR). */
  onPush?: (type: number, body: Body) => void;
  /**
   * Called once when an open connection is gone (error: why, null on a clean close). Not called
   * for one that never opened: `open` rejects instead.
   */
  onClose?: (error: SpitfireError | null) => void;
  /** Keep the process alive while the socket is open, even with nothing in flight (workers). */
  keepAlive?: boolean;
}

interface Pending {
  resolve: (a: Answer) => void;
  reject: (e: SpitfireError) => void;
  timer: NodeJS.Timeout | undefined;
  type: number;
  notFound: NotFoundKind;
}

export function clientName(): string {
  return `spitfire-ts/${SDK_VERSION} ${os.hostname()}:${process.pid}`;
}

export class Connection {
  /** What the server said in WELCOME (set once `open` resolves). */
  welcome: Welcome = {
    version: PROTOCOL_VERSION,
    server: "",
    max_frame: DEFAULT_MAX_FRAME,
    max_payload: 1024 * 1024,
    heartbeat_interval: 10,
  };
  /** The server sent GOAWAY: send nothing new here. */
  draining = false;
  closed = false;
  /** The handshake succeeded (`open` resolved or is resolving). */
  private opened = false;

  private readonly socket: net.Socket;
  private readonly reader = new FrameReader(DEFAULT_MAX_FRAME);
  private readonly pending = new Map<number, Pending>();
  private nextId = 0;
  private out = new Writer(4096);
  private flushScheduled = false;
  private closeError: SpitfireError | null = null;

  private constructor(private readonly opts: ConnectionOptions) {
    this.socket = new net.Socket();
    this.socket.setNoDelay(true);
    this.socket.on("data", (chunk: Buffer) => {
      this.onData(chunk);
    });
    this.socket.on("error", (err: Error) => {
      this.fail(new ConnectionLost(`connection to ${this.where} failed: ${err.message}`, { cause: err }));
    });
    this.socket.on("close", () => {
      this.fail(this.closeError ?? new ConnectionLost(`the server at ${this.where} closed the connection`));
    });
  }

  get where(): string {
    return `${this.opts.endpoint.host}:${this.opts.endpoint.port}`;
  }

  /** Connects, sends HELLO and waits for WELCOME. Rejects with the server's typed error. */
  static async open(opts: ConnectionOptions): Promise<Connection> {
    const conn = new Connection(opts);
    const { host, port } = opts.endpoint;
    const hello = conn.request(
      MessageType.HELLO,
      { version: PROTOCOL_VERSION, client: clientName(), token: opts.authToken ?? null },
      opts.connectTimeoutMs,
    );
    conn.socket.connect({ host, port });
    try {
      const answer = await hello;
      if (answer.type !== MessageType.WELCOME) throw new ProtocolError(`HELLO answered with type ${answer.type}`);
      conn.welcome = answer.body as unknown as Welcome;
      conn.opened = true;
      conn.reader.maxFrame = Math.max(conn.welcome.max_frame, DEFAULT_MAX_FRAME);
    } catch (err) {
      conn.destroy();
      if (err instanceof RequestTimeout) {
        throw new NotConnected(`no WELCOME from ${conn.where} within ${opts.connectTimeoutMs} ms`, { cause: err });
      }
      throw err;
    }
    conn.updateRef();
    return conn;
  }

  /** Requests awaiting their answer. */
  get inFlight(): number {
    return this.pending.size;
  }

  /**
   * Sends a request and resolves with its answer; an ERROR answer rejects with the typed error
   * (`notFound` picks the NotFound subclass). `timeoutMs` 0 means no timeout.
   */
  request(type: number, body: Body, timeoutMs: number, notFound: NotFoundKind = null): Promise<Answer> {
    if (this.closed) return Promise.reject(this.closeError ?? new ClientClosed("the connection is closed"));
    const id = this.allocateId();
    return new Promise<Answer>((resolve, reject) => {
      const entry: Pending = { resolve, reject, timer: undefined, type, notFound };
      if (timeoutMs > 0) {
        entry.timer = setTimeout(() => {
          this.pending.delete(id);
          this.updateRef();
          reject(new RequestTimeout(`no answer to ${typeName(type) ?? type} from ${this.where} within ${timeoutMs} ms`));
        }, timeoutMs);
      }
      this.pending.set(id, entry);
      try {
        this.queue(type, id, body);
      } catch (err) {
        this.pending.delete(id);
        clearTimeout(entry.timer);
        reject(err instanceof SpitfireError ? err : new SpitfireError(String(err), { code: "INVALID_ARGUMENT", cause: err }));
        return;
      }
      this.updateRef();
    });
  }

  /** Sends a frame that gets no answer (CREDIT, START): request id 0. */
  send(type: number, body: Body): void {
    if (this.closed) return;
    this.queue(type, 0, body);
  }

  /** Closes the socket once what is queued is written; pending requests fail with ConnectionLost. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.flush();
    this.socket.ref(); // an idle client's socket is unref'd: keep the process alive until it closed
    await new Promise<void>((resolve) => {
      this.socket.once("close", () => {
        resolve();
      });
      this.socket.end();
      setTimeout(() => {
        this.socket.destroy();
      }, 2000).unref();
    });
  }

  destroy(): void {
    this.socket.destroy();
    this.fail(new ClientClosed("the connection was closed"));
  }

  private allocateId(): number {
    for (let i = 0; i < 1000; i++) {
      this.nextId = this.nextId >= MAX_REQUEST_ID ? 1 : this.nextId + 1;
      if (!this.pending.has(this.nextId)) return this.nextId;
    }
    throw new SpitfireError("no free request id", { code: "INTERNAL" });
  }

  /** Encodes into the batch; one write per event-loop turn carries every frame queued in it. */
  private queue(type: number, id: number, body: Body): void {
    const mark = this.out.pos;
    try {
      writeFrame(this.out, type, id, body);
    } catch (err) {
      this.out.pos = mark; // drop the half-written frame
      throw err instanceof TypeError ? new SpitfireError(err.message, { code: "INVALID_ARGUMENT" }) : err;
    }
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => {
        this.flush();
      });
    }
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.out.pos === 0 || this.socket.destroyed) return;
    const data = Buffer.from(this.out.bytes());
    this.out.pos = 0;
    if (this.out.bytes().buffer.byteLength > 1 << 20) this.out = new Writer(4096); // do not hold a huge buffer
    this.socket.write(data);
  }

  private onData(chunk: Buffer): void {
    let frames: Frame[];
    try {
      frames = this.reader.push(chunk);
    } catch (err) {
      this.closeError = err instanceof SpitfireError ? err : new ProtocolError(String(err));
      this.socket.destroy();
      return;
    }
    for (const frame of frames) {
      try {
        this.onFrame(frame);
      } catch (err) {
        this.closeError = err instanceof SpitfireError ? err : new ProtocolError(String(err));
        this.socket.destroy();
        return;
      }
    }
  }

  private onFrame(frame: Frame): void {
    const body = decodeBody(frame.type, frame.body);
    if (frame.requestId === 0) {
      if (frame.type === MessageType.ERROR) {
        const err = errorFromWire(
          body.code as string,
          body.message as string,
          body.field as string | null,
          body.retry_after as number | null,
        );
        // Before WELCOME (BUSY at the connection limit): the typed error itself; later the
        // connection failed and every request in flight has an unknown outcome.
        this.closeError = this.welcome.server
          ? new ConnectionLost(`the server closed the connection: ${err.message}`, { cause: err })
          : err;
        this.socket.destroy();
        return;
      }
      if (frame.type === MessageType.GOAWAY) this.draining = true;
      this.opts.onPush?.(frame.type, body);
      return;
    }
    const entry = this.pending.get(frame.requestId);
    if (entry === undefined) return; // timed out already
    this.pending.delete(frame.requestId);
    clearTimeout(entry.timer);
    if (frame.type === MessageType.ERROR) {
      entry.reject(
        errorFromWire(
          body.code as string,
          body.message as string,
          body.field as string | null,
          body.retry_after as number | null,
          entry.notFound,
        ),
      );
    } else {
      entry.resolve({ type: frame.type, body });
    }
    this.updateRef();
  }

  private fail(error: SpitfireError): void {
    if (this.closed) return;
    this.closed = true;
    this.closeError ??= error;
    const err = this.closeError;
    for (const entry of this.pending.values()) {
      clearTimeout(entry.timer);
      entry.reject(
        err instanceof ConnectionLost || err instanceof ClientClosed || !this.welcome.server
          ? err
          : new ConnectionLost(`connection to ${this.where} lost: ${err.message}`, { cause: err }),
      );
    }
    this.pending.clear();
    this.socket.destroy();
    if (this.opened) this.opts.onClose?.(err instanceof ClientClosed ? null : err);
  }

  /** A client with nothing in flight does not keep the process alive; a worker does. */
  private updateRef(): void {
    if (this.opts.keepAlive || this.pending.size > 0) this.socket.ref();
    else this.socket.unref();
  }
}
