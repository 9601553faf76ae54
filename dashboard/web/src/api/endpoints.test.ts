import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { getToken, isAuthNeeded, setAuthNeeded, setToken } from "./auth";
import { ApiError, queryString, setFetch } from "./client";
import { bulk, fetchHistory, fetchJobs, fetchStats } from "./endpoints";

interface Call {
  method: string;
  url: string;
  headers: Record<string, string>;
  body: unknown;
}

/** A scripted server: routes "METHOD path-without-query" to an answer. */
function fakeServer(routes: Record<string, (url: URL) => [number, unknown]>): Call[] {
  const calls: Call[] = [];
  setFetch(async (input, init) => {
    const url = new URL(String(input), "http://dash");
    const method = init?.method ?? "GET";
    calls.push({
      method,
      url: url.pathname + url.search,
      headers: init?.headers as Record<string, string>,
      body: init?.body ? JSON.parse(String(init.body)) : undefined,
    });
    const route = routes[`${method} ${url.pathname}`];
    const [status, body] = route ? route(url) : [404, { error: { code: "ROUTE_NOT_FOUND", message: "no route" } }];
    return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
  });
  return calls;
}

const job = (id: string) => ({ id, queue: "q", name: "n", state: "dead" });
const needQ = (): [number, unknown] => [422, { error: { code: "INVALID_ARGUMENT", message: "q: give ...", field: "q" } }];

beforeEach(() => {
  setToken(null);
  setAuthNeeded(false);
});
afterEach(() => setFetch((...a) => fetch(...a)));

describe("queryString", () => {
  it("leaves out empty values and repeats arrays", () => {
    expect(queryString({ a: "1", b: "", c: undefined, d: null, s: ["dead", "retrying"], n: 0 })).toBe(
      "?a=1&s=dead&s=retrying&n=0",
    );
    expect(queryString({})).toBe("");
  });
});

describe("requests", () => {
  it("send the token only in the Authorization header", async () => {
    const calls = fakeServer({ "GET /api/stats": () => [200, { total_jobs: 1 }] });
    setToken("s3cret");
    await fetchStats();
    expect(calls[0]?.headers.Authorization).toBe("Bearer s3cret");
    expect(calls[0]?.url).toBe("/api/stats");
    expect(getToken()).toBe("s3cret");
  });

  it("turn a 401 into the login screen and errors into ApiError", async () => {
    fakeServer({ "GET /api/stats": () => [401, { error: { code: "UNAUTHORIZED", message: "missing token" } }] });
    const err = await fetchStats().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).code).toBe("UNAUTHORIZED");
    expect(isAuthNeeded()).toBe(true);
  });

  it("say when the server cannot be reached", async () => {
    setFetch(async () => {
      throw new TypeError("fetch failed");
    });
    await expect(fetchStats()).rejects.toMatchObject({ status: 0, code: "NETWORK" });
  });
});

describe("fetchJobs", () => {
  it("lists across queues with every filter", async () => {
    const calls = fakeServer({ "GET /api/jobs": () => [200, { jobs: [job("a")], next_cursor: "c2" }] });
    const page = await fetchJobs({ state: ["dead", "retrying"], queue: "q", name: "n", after: "1", order: "oldest", limit: 50, cursor: "c1" });
    expect(page).toEqual({ jobs: [job("a")], next_cursor: "c2" });
    expect(calls[0]?.url).toBe("/api/jobs?queue=q&state=dead%2Cretrying&name=n&after=1&order=oldest&limit=50&cursor=c1");
  });

  it("falls back to the queue listing on an older server, and remembers it", async () => {
    const calls = fakeServer({
      "GET /api/jobs": needQ,
      "GET /api/queues/q%201/jobs": () => [200, { jobs: [job("b")], next_cursor: null }],
    });
    expect((await fetchJobs({ queue: "q 1", state: ["dead"] })).jobs).toEqual([job("b")]);
    expect(calls.map((c) => c.url)).toEqual(["/api/jobs?queue=q+1&state=dead", "/api/queues/q%201/jobs?state=dead"]);
    await fetchJobs({ queue: "q 1" });
    expect(calls[2]?.url).toBe("/api/queues/q%201/jobs?state=enqueued");
    await expect(fetchJobs({ state: ["dead"] })).rejects.toMatchObject({ code: "UNSUPPORTED" });
  });
});

describe("bulk", () => {
  it("posts ids or a filter to /api/jobs:bulk", async () => {
    const calls = fakeServer({ "POST /api/jobs:bulk": () => [200, { matched: 3, done: 2, failed: 1 }] });
    expect(await bulk("retry", { filter: { queue: "q", state: ["dead"] } })).toEqual({ matched: 3, done: 2, failed: 1 });
    expect(calls[0]?.body).toEqual({ action: "retry", filter: { queue: "q", state: ["dead"] } });
  });

  it("does ids one by one on a server without the bulk route, counting what did not apply", async () => {
    const calls = fakeServer({
      "POST /api/jobs/a/retry": () => [200, job("a")],
      "POST /api/jobs/b/retry": () => [409, { error: { code: "INVALID_STATE", message: "succeeded" } }],
    });
    expect(await bulk("retry", { ids: ["a", "b"] })).toEqual({ matched: 2, done: 1, failed: 1 });
    expect(calls.map((c) => c.url)).toEqual(["/api/jobs:bulk", "/api/jobs/a/retry", "/api/jobs/b/retry"]);
    await expect(bulk("delete", { filter: { state: ["dead"] } })).rejects.toMatchObject({ status: 404 });
  });
});

describe("fetchHistory", () => {
  it("answers null (no history yet) when the server has no such route", async () => {
    fakeServer({});
    expect(await fetchHistory(60, 60)).toBeNull();
  });
  it("asks for minutes, step and queue", async () => {
    const calls = fakeServer({ "GET /api/stats/history": () => [200, { step: 60, points: [] }] });
    expect(await fetchHistory(1440, 900, "emails")).toEqual({ step: 60, points: [] });
    expect(calls[0]?.url).toBe("/api/stats/history?minutes=1440&step=900&queue=emails");
  });
});
