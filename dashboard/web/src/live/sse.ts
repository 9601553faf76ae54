// A Server-Sent Events client over fetch, so that the token travels in the Authorization header
// (EventSource cannot send headers, and a token in a URL ends up in logs). It follows the
// EventSource rules the dashboard needs: the event-stream parsing of the HTML standard, the last
// event id sent back as Last-Event-ID on reconnection, and reconnection with backoff after any
// error or end of stream. A stream that says nothing for `idleTimeoutMs` (the server sends stats
// every second) is taken as dead and reopened: a half-open TCP connection never looks "live".

/** One dispatched event. `id` is the last event id in force when it was dispatched. */
export interface SseMessage {
  id: string | null;
  event: string;
  data: string;
}

/** The event-stream parser: feed it text as it arrives, in chunks cut anywhere. */
export class SseParser {
  private buffer = "";
  private data: string[] = [];
  private event = "";
  /** The last event id buffer: it persists from one event to the next, as in EventSource. */
  lastEventId: string | null = null;
  /** The last `retry:` the stream asked for, in milliseconds. */
  retry: number | null = null;

  constructor(lastEventId: string | null = null) {
    this.lastEventId = lastEventId;
  }

  feed(text: string): SseMessage[] {
    this.buffer += text;
    const out: SseMessage[] = [];
    let start = 0;
    const buf = this.buffer;
    for (let i = 0; i < buf.length; i++) {
      const c = buf.charCodeAt(i);
      if (c !== 10 && c !== 13) continue;
      if (c === 13 && i === buf.length - 1) break; // a CR at the end may be half of CRLF: wait
      this.line(buf.slice(start, i), out);
      if (c === 13 && buf.charCodeAt(i + 1) === 10) i++;
      start = i + 1;
    }
    this.buffer = buf.slice(start);
    return out;
  }

  private line(line: string, out: SseMessage[]): void {
    if (line === "") {
      if (this.data.length) out.push({ id: this.lastEventId, event: this.event || "message", data: this.data.join("\n") });
      this.data = [];
      this.event = "";
      return;
    }
    if (line.startsWith(":")) return; // a comment (keep-alive)
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    switch (field) {
      case "data":
        this.data.push(value);
        break;
      case "event":
        this.event = value;
        break;
      case "id":
        if (!value.includes("\0")) this.lastEventId = value;
        break;
      case "retry":
        if (/^\d+$/.test(value)) this.retry = Number(value);
        break;
      default: // unknown fields are ignored
    }
  }
}

export type SseStatus = "connecting" | "open" | "reconnecting" | "unauthorized" | "closed";

export interface SseClientOptions {
  url: string;
  /** Headers of each (re)connection, e.g. the Authorization header; read anew every time. */
  headers?: () => Record<string, string>;
  onMessage: (message: SseMessage) => void;
  /** The stream is open; `resync` is true when it is not the first one (events may be missing). */
  onOpen?: (info: { resync: boolean }) => void;
  onStatus?: (status: SseStatus) => void;
  fetch?: typeof fetch;
  /** First reconnection delay; it doubles up to maxDelayMs. */
  minDelayMs?: number;
  maxDelayMs?: number;
  idleTimeoutMs?: number;
  random?: () => number;
}

/** The reconnection delay before try `attempt` (1, 2, ...): doubling, capped, with jitter in
 * [delay / 2, delay] so that many dashboards do not all come back in the same millisecond. */
export function backoffDelay(attempt: number, min: number, max: number, random: () => number): number {
  const delay = Math.min(max, min * 2 ** Math.max(0, attempt - 1));
  return delay / 2 + (random() * delay) / 2;
}

export class SseClient {
  private closed = false;
  private controller: AbortController | null = null;
  private idleTimer: ReturnType<typeof setTimeout> | null = null;
  private sleepTimer: ReturnType<typeof setTimeout> | null = null;
  private wake: (() => void) | null = null;
  private status: SseStatus = "closed";
  private opened = 0;
  /** The id of the last event received (sent as Last-Event-ID when reconnecting). */
  lastEventId: string | null = null;
  private readonly opts: Required<Omit<SseClientOptions, "headers" | "onOpen" | "onStatus">> &
    Pick<SseClientOptions, "headers" | "onOpen" | "onStatus">;

  constructor(options: SseClientOptions) {
    this.opts = {
      fetch: (...args) => fetch(...args),
      minDelayMs: 500,
      maxDelayMs: 10_000,
      idleTimeoutMs: 15_000,
      random: Math.random,
      ...options,
    };
  }

  get state(): SseStatus {
    return this.status;
  }

  /** Connect and keep connected until close(). */
  start(): void {
    this.closed = false;
    void this.run();
  }

  close(): void {
    this.closed = true;
    this.controller?.abort();
    this.clearIdle();
    if (this.sleepTimer !== null) clearTimeout(this.sleepTimer);
    this.wake?.();
    this.setStatus("closed");
  }

  private setStatus(status: SseStatus): void {
    if (this.status === status) return;
    this.status = status;
    this.opts.onStatus?.(status);
  }

  private async run(): Promise<void> {
    let failures = 0;
    while (!this.closed) {
      this.setStatus(this.opened || failures ? "reconnecting" : "connecting");
      const controller = new AbortController();
      this.controller = controller;
      try {
        const headers: Record<string, string> = { Accept: "text/event-stream", ...this.opts.headers?.() };
        if (this.lastEventId !== null) headers["Last-Event-ID"] = this.lastEventId;
        this.armIdle(controller);
        const response = await this.opts.fetch(this.opts.url, { headers, signal: controller.signal, cache: "no-store" });
        if (response.status === 401) {
          this.clearIdle();
          this.closed = true;
          this.setStatus("unauthorized");
          return;
        }
        if (!response.ok || !response.body) throw new Error(`event stream answered ${response.status}`);
        failures = 0;
        const resync = this.opened > 0;
        this.opened += 1;
        this.setStatus("open");
        this.opts.onOpen?.({ resync });
        await this.pump(response.body, controller);
      } catch {
        // a network error, an abort by the idle timer, or a bad answer: reconnect below
      } finally {
        this.clearIdle();
      }
      if (this.closed) break;
      failures += 1;
      this.setStatus("reconnecting");
      await this.sleep(backoffDelay(failures, this.opts.minDelayMs, this.opts.maxDelayMs, this.opts.random));
    }
  }

  private async pump(body: ReadableStream<Uint8Array>, controller: AbortController): Promise<void> {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    const parser = new SseParser(this.lastEventId);
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done || this.closed) return;
        this.armIdle(controller);
        for (const message of parser.feed(decoder.decode(value, { stream: true }))) {
          this.lastEventId = message.id;
          if (this.closed) return;
          this.opts.onMessage(message);
        }
      }
    } finally {
      reader.releaseLock();
    }
  }

  private armIdle(controller: AbortController): void {
    this.clearIdle();
    this.idleTimer = setTimeout(() => controller.abort(), this.opts.idleTimeoutMs);
  }

  private clearIdle(): void {
    if (this.idleTimer !== null) clearTimeout(this.idleTimer);
    this.idleTimer = null;
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.wake = resolve;
      this.sleepTimer = setTimeout(resolve, ms);
    });
  }
}
