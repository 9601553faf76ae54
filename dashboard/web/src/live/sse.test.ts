import { describe, expect, it } from "vitest";
import { backoffDelay, SseClient, SseParser, type SseMessage, type SseStatus } from "./sse";

describe("SseParser", () => {
  it("parses events cut anywhere, CRLF included", () => {
    const text = "id: 1\r\nevent: job\r\ndata: {\"a\":1}\r\n\r\nid: 2\nevent: stats\ndata: x\n\n";
    for (let cut = 0; cut <= text.length; cut++) {
      const p = new SseParser();
      const out = [...p.feed(text.slice(0, cut)), ...p.feed(text.slice(cut))];
      expect(out).toEqual([
        { id: "1", event: "job", data: '{"a":1}' },
        { id: "2", event: "stats", data: "x" },
      ]);
    }
  });

  it("joins data lines, skips comments, keeps the last id, reads retry", () => {
    const p = new SseParser();
    const out = p.feed(": keep-alive\ndata: a\ndata:b\nretry: 3000\n\nid: 7\n\ndata: c\n\n");
    expect(out).toEqual([
      { id: null, event: "message", data: "a\nb" },
      { id: "7", event: "message", data: "c" },
    ]);
    expect(p.retry).toBe(3000);
    expect(p.lastEventId).toBe("7");
  });

  it("dispatches nothing for an event without data and ignores unknown fields", () => {
    const p = new SseParser("3");
    expect(p.feed("event: job\n\nfoo: bar\nid\n\n")).toEqual([]);
    expect(p.lastEventId).toBe("");
  });

  it("takes CR alone as a line end once the next character shows it is not CRLF", () => {
    const p = new SseParser();
    expect(p.feed("data: x\r")).toEqual([]);
    expect(p.feed("\rdata: y\r\r")).toEqual([{ id: null, event: "message", data: "x" }]);
    expect(p.feed("\n")).toEqual([{ id: null, event: "message", data: "y" }]);
  });
});

describe("backoffDelay", () => {
  it("doubles up to the cap, with jitter in [delay / 2, delay]", () => {
    expect(backoffDelay(1, 500, 10_000, () => 1)).toBe(500);
    expect(backoffDelay(2, 500, 10_000, () => 1)).toBe(1000);
    expect(backoffDelay(3, 500, 10_000, () => 0)).toBe(1000);
    expect(backoffDelay(20, 500, 10_000, () => 1)).toBe(10_000);
  });
});

/** A fake server: each fetch answers the next scripted stream, and records its headers. */
class FakeServer {
  calls: Record<string, string>[] = [];
  private streams: ReadableStreamDefaultController<Uint8Array>[] = [];
  private waiters: (() => void)[] = [];
  status = 200;
  failNext = 0;

  fetch: typeof fetch = async (_url, init) => {
    this.calls.push({ ...(init?.headers as Record<string, string>) });
    this.waiters.shift()?.();
    if (this.failNext > 0) {
      this.failNext -= 1;
      throw new TypeError("connection refused");
    }
    if (this.status !== 200) return new Response("{}", { status: this.status });
    const signal = init?.signal;
    const body = new ReadableStream<Uint8Array>({
      start: (c) => {
        this.streams.push(c);
        signal?.addEventListener("abort", () => c.error(new DOMException("aborted", "AbortError")));
      },
    });
    return new Response(body, { status: 200, headers: { "Content-Type": "text/event-stream" } });
  };

  /** Sends on the open stream; false when the client has closed it (aborted the fetch). */
  send(text: string): boolean {
    try {
      this.streams[this.streams.length - 1]?.enqueue(new TextEncoder().encode(text));
      return true;
    } catch {
      return false;
    }
  }

  /** The server goes away: the open stream ends. */
  end(): void {
    this.streams[this.streams.length - 1]?.close();
  }

  nextCall(): Promise<void> {
    return new Promise((resolve) => this.waiters.push(resolve));
  }
}

const until = async (check: () => boolean, ms = 2000) => {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 2));
  }
};

function client(server: FakeServer, extra: Partial<ConstructorParameters<typeof SseClient>[0]> = {}) {
  const messages: SseMessage[] = [];
  const opens: boolean[] = [];
  const statuses: SseStatus[] = [];
  let token = "t1";
  const sse = new SseClient({
    url: "/api/events",
    fetch: server.fetch,
    headers: () => ({ Authorization: `Bearer ${token}` }),
    onMessage: (m) => messages.push(m),
    onOpen: ({ resync }) => opens.push(resync),
    onStatus: (s) => statuses.push(s),
    minDelayMs: 1,
    maxDelayMs: 4,
    ...extra,
  });
  return { sse, messages, opens, statuses, setToken: (t: string) => (token = t) };
}

describe("SseClient", () => {
  it("reconnects after the stream ends, sending Last-Event-ID, and asks for a resync", async () => {
    const server = new FakeServer();
    const c = client(server);
    c.sse.start();
    await until(() => c.statuses.includes("open"));
    server.send("id: 41\nevent: job\ndata: {}\n\nid: 42\nevent: stats\ndata: {}\n\n");
    await until(() => c.messages.length === 2);
    expect(c.sse.lastEventId).toBe("42");
    c.setToken("t2");
    const again = server.nextCall();
    server.end(); // e.g. the server restarted
    await again;
    await until(() => c.opens.length === 2);
    expect(server.calls[0]).toMatchObject({ Authorization: "Bearer t1", Accept: "text/event-stream" });
    expect(server.calls[0]?.["Last-Event-ID"]).toBeUndefined();
    expect(server.calls[1]).toMatchObject({ Authorization: "Bearer t2", "Last-Event-ID": "42" });
    expect(c.opens).toEqual([false, true]);
    expect(c.statuses).toEqual(["connecting", "open", "reconnecting", "open"]);
    c.sse.close();
    expect(c.sse.state).toBe("closed");
  });

  it("keeps trying while the server is down, then connects", async () => {
    const server = new FakeServer();
    server.failNext = 3;
    const c = client(server);
    c.sse.start();
    await until(() => c.statuses.includes("open"));
    expect(server.calls.length).toBe(4);
    expect(c.opens).toEqual([false]);
    c.sse.close();
  });

  it("stops on 401 and says so (the app shows its login)", async () => {
    const server = new FakeServer();
    server.status = 401;
    const c = client(server);
    c.sse.start();
    await until(() => c.statuses.includes("unauthorized"));
    await new Promise((r) => setTimeout(r, 30));
    expect(server.calls.length).toBe(1);
  });

  it("takes a silent stream for dead and reopens it", async () => {
    const server = new FakeServer();
    const c = client(server, { idleTimeoutMs: 40 });
    c.sse.start();
    await until(() => c.opens.length === 1);
    server.send("id: 5\nevent: stats\ndata: {}\n\n");
    await until(() => c.opens.length === 2, 3000);
    expect(server.calls[1]?.["Last-Event-ID"]).toBe("5");
    c.sse.close();
  });

  it("delivers nothing after close", async () => {
    const server = new FakeServer();
    const c = client(server);
    c.sse.start();
    await until(() => c.statuses.includes("open"));
    c.sse.close();
    expect(server.send("data: late\n\n")).toBe(false); // the request was aborted
    await new Promise((r) => setTimeout(r, 20));
    expect(c.messages).toEqual([]);
    expect(server.calls.length).toBe(1);
  });
});
