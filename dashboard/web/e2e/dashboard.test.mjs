// End-to-end tests of the dashboard in a real browser: playwright-core driving the system's
// chromium (never a downloaded browser) against a live spitfire-server that
// tests/dashboard/test_browser.py started and seeded. Run one test with
// `node --test --test-name-pattern=NAME e2e/dashboard.test.mjs`.
//
// Environment: SPITFIRE_URL (a server without a token, seeded), SPITFIRE_AUTH_URL and
// SPITFIRE_TOKEN (a server with --auth-token), CHROMIUM (default /usr/bin/chromium),
// SCREENSHOTS (a folder: the "screenshots" test writes every page in both themes there).

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { chromium } from "playwright-core";

const BASE = process.env.SPITFIRE_URL ?? "http://127.0.0.1:7880";
const TIMEOUT = 15_000;
/** Queues of this run get this suffix, so a rerun against the same server starts clean. */
const RUN = Date.now().toString(36);
const Q = (name) => `${name}-${RUN}`;
/** Routes an older server does not have: their 404 is part of degrading gracefully. */
const OPTIONAL = ["/api/stats/history"];
/** Set by test_browser.py when the server predates GET /api/jobs without q: the one failing probe
 * is expected, and a listing across every queue shows its "newer version" notice instead of rows. */
const LEGACY = process.env.SPITFIRE_LEGACY_LISTING === "1";
if (LEGACY) OPTIONAL.push("/api/jobs?");

let browser;

before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu"],
  });
});

after(async () => {
  await browser?.close();
});

/** A fresh page that records console errors and uncaught exceptions. */
async function open(options = {}) {
  const { allow = [], ...contextOptions } = options;
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, ...contextOptions });
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  const errors = [];
  page.on("console", (msg) => {
    if (msg.type() !== "error") return;
    const url = msg.location()?.url ?? "";
    if (msg.text().startsWith("Failed to load resource") && [...OPTIONAL, ...allow].some((p) => url.includes(p))) return;
    errors.push(`${msg.text()} (${url})`);
  });
  page.on("pageerror", (err) => errors.push(`uncaught: ${err.message}`));
  return { context, page, errors };
}

async function api(method, path, body, base = BASE, token) {
  const headers = { "Content-Type": "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  const r = await fetch(base + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${text}`);
  return JSON.parse(text);
}

const enqueue = (queue, name, fields = {}) => api("POST", `/api/queues/${queue}/jobs`, { name, ...fields });

/** A dead job of its own in `queue`: enqueued with one attempt, claimed and failed. */
async function deadJob(queue) {
  const job = await enqueue(queue, "flaky", { payload: { n: 1 }, max_attempts: 1 });
  const claimed = await api("POST", `/api/queues/${queue}/claim`, { worker: "e2e", limit: 1 });
  assert.equal(claimed.jobs[0].id, job.id);
  await api("POST", `/api/jobs/${job.id}/fail`, { worker: "e2e", error: "boom", retryable: false });
  return job.id;
}

const PAGES = [
  { name: "overview", path: "/", ready: "h1:text('Overview')", data: "[data-testid=count-dead] .state-card-n" },
  { name: "queues", path: "/queues", ready: "h1:text('Queues')", data: "tr[data-queue=emails]" },
  { name: "queue", path: "/queues/emails", ready: "[data-testid=queue-status]", data: "tr[data-job-id]" },
  { name: "jobs", path: "/jobs", ready: "h1:text('Jobs')", data: LEGACY ? ".error-box" : "tr[data-job-id]" },
  { name: "jobs-dead", path: "/jobs?state=dead", ready: "h1:text('Jobs')", data: LEGACY ? ".error-box" : "tr[data-job-id] .row-error" },
  { name: "search", path: "/jobs?q=build_report", ready: "h1:text('Search')", data: "tr[data-job-id]" },
  { name: "job", path: "/jobs/{dead}", ready: "h2:text('Attempts')", data: "summary:text('Traceback')" },
  { name: "recurring", path: "/recurring", ready: "h1:text('Recurring')", data: ".empty, td:text('every day at 03:00')" },
  { name: "workers", path: "/workers", ready: "h1:text('Workers')", data: "h2:text('Possibly aborted jobs')" },
  { name: "definitions", path: "/definitions", ready: "h1:text('Job definitions')", data: ".empty, tr[data-definition]" },
];

async function firstDead() {
  const page = await api("GET", "/api/jobs?q=build_report&limit=50");
  const dead = page.jobs.find((j) => j.state === "dead");
  assert.ok(dead, "the seed has a dead build_report job");
  return dead.id;
}

test("every page renders with real data and no console errors", async () => {
  const dead = await firstDead();
  const { context, page, errors } = await open();
  try {
    for (const p of PAGES) {
      await page.goto(BASE + p.path.replace("{dead}", dead));
      await page.waitForSelector(p.ready);
      await page.waitForSelector(p.data);
      if (p.name === "overview") {
        await page.waitForFunction(() => document.querySelector("[data-testid=count-dead] .state-card-n")?.textContent !== "0");
      }
      assert.deepEqual(errors, [], `console errors on ${p.path}`);
    }
  } finally {
    await context.close();
  }
});

test("a job enqueued through the API appears without a reload", async () => {
  const queue = Q("live");
  const first = await enqueue(queue, "tick", { payload: { n: 1 } });
  const { context, page, errors } = await open();
  try {
    await page.goto(`${BASE}/jobs?queue=${queue}`);
    await page.waitForSelector(`tr[data-job-id="${first.id}"]`);
    await page.waitForSelector("[data-testid=connection][data-status=open]");
    const loads = [];
    page.on("framenavigated", (f) => f === page.mainFrame() && loads.push(f.url()));
    const second = await enqueue(queue, "tick", { payload: { n: 2 } });
    await page.waitForSelector(`tr[data-job-id="${second.id}"]`);
    assert.deepEqual(loads, [], "the page was not reloaded");
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
  }
});

test("retrying a dead job from its page changes its state", async () => {
  const id = await deadJob(Q("retry"));
  const { context, page, errors } = await open();
  try {
    await page.goto(`${BASE}/jobs/${id}`);
    await page.waitForSelector(".job-title .badge:text('dead')");
    await page.click("button:text-is('Retry')");
    await page.waitForSelector(".job-title .badge:text('enqueued')");
    const job = await api("GET", `/api/jobs/${id}`);
    assert.equal(job.state, "enqueued");
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
  }
});

test("a job's page shows its trace id, linked by --trace-url-template", async () => {
  const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
  const traced = await enqueue(Q("traced"), "send_email", {
    headers: { traceparent: `00-${traceId}-00f067aa0ba902b7-01`, tenant: "t1" },
  });
  const plain = await enqueue(Q("traced"), "send_email", { headers: { traceparent: "garbage" } });
  const template = (await api("GET", "/api/stats")).server.trace_url_template;
  assert.ok(template?.includes("{trace_id}"), "the test server runs with --trace-url-template");
  const { context, page, errors } = await open();
  try {
    await page.goto(`${BASE}/jobs/${traced.id}`);
    const link = page.locator("[data-testid=trace-id] a");
    await link.waitFor();
    assert.equal(await link.textContent(), traceId);
    assert.equal(await link.getAttribute("href"), template.replace("{trace_id}", traceId));
    assert.equal(await link.getAttribute("rel"), "noopener noreferrer");
    await page.goto(`${BASE}/jobs/${plain.id}`);
    await page.waitForSelector("h2:text('Options')");
    await page.waitForSelector("div.mono:text('traceparent: garbage')");
    assert.equal(await page.locator("[data-testid=trace-id]").count(), 0); // a malformed one: no trace
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
  }
});

test("a bulk retry over a filter retries every matching job", async () => {
  const ids = [await deadJob(Q("bulk")), await deadJob(Q("bulk")), await deadJob(Q("bulk"))];
  const { context, page, errors } = await open();
  try {
    await page.goto(`${BASE}/jobs?queue=${Q("bulk")}&state=dead`);
    await page.waitForSelector(`tr[data-job-id="${ids[0]}"]`);
    await page.selectOption("#bulk-all-action", "retry");
    await page.click("button:text('Apply to all 3 matching')");
    await page.click(".confirm button:text-is('Yes')");
    await page.waitForSelector("[data-testid=bulk-result]:text('3 of 3 done')");
    for (const id of ids) assert.equal((await api("GET", `/api/jobs/${id}`)).state, "enqueued");
    await page.waitForSelector(".empty:text('No jobs match')");
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
  }
});

test("pause and resume a queue", async () => {
  const queue = Q("pausable");
  await enqueue(queue, "work");
  const { context, page, errors } = await open();
  try {
    await page.goto(`${BASE}/queues/${queue}`);
    await page.waitForSelector("[data-testid=queue-status]:text('running')");
    await page.click("button:text-is('Pause')");
    await page.waitForSelector("[data-testid=queue-status]:text('paused')");
    assert.equal((await api("GET", `/api/queues/${queue}`)).paused, true);
    await page.click("button:text-is('Resume')");
    await page.waitForSelector("[data-testid=queue-status]:text('running')");
    assert.equal((await api("GET", `/api/queues/${queue}`)).paused, false);
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
  }
});

test("trigger, pause and resume a recurring schedule", async () => {
  const name = Q("sched");
  try {
    await api("POST", "/api/schedules", { name, cron: "0 3 * * *", queue: Q("sched"), job: "tick" });
  } catch (err) {
    if (String(err).includes(": 404 ")) return; // a server without schedules: nothing to drive
    throw err;
  }
  const { context, page, errors } = await open();
  try {
    await page.goto(`${BASE}/recurring`);
    const row = page.locator("tr", { hasText: name });
    await row.locator("text=every day at 03:00").waitFor();
    await row.locator("button:text-is('Trigger now')").click();
    await row.locator("a .badge").waitFor(); // the last run links to the job it enqueued
    const s = (await api("GET", "/api/schedules")).schedules.find((x) => x.name === name);
    assert.ok(s.last_job_id, "the trigger enqueued a job");
    await row.locator("button:text-is('Pause')").click();
    await row.locator(".badge.paused").waitFor();
    await row.locator("button:text-is('Resume')").click();
    await row.locator("button:text-is('Pause')").waitFor();
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
  }
});

test("the job definitions page shows a registered definition and its schema", async () => {
  const name = Q("send_email");
  const schema = { type: "object", properties: { to: { type: "string" }, subject: { type: "string" } }, required: ["to"] };
  try {
    await api("POST", "/api/job-definitions", {
      definitions: [{ name, queue: Q("emails"), max_attempts: 5, timeout_ms: 30_000, schema, validate: true }],
    });
  } catch (err) {
    if (String(err).includes(": 404 ")) return; // a server without job definitions: nothing to show
    throw err;
  }
  const { context, page, errors } = await open();
  try {
    await page.goto(`${BASE}/definitions`);
    const row = page.locator(`tr[data-definition="${name}"]`);
    await row.locator("text=5 attempts · 30 s lease").waitFor();
    await row.locator(".badge:text-is('validated')").waitFor();
    await row.locator("summary:text-is('Schema')").click();
    await row.locator("pre.code", { hasText: '"required"' }).waitFor();
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
  }
});

test("a job's page lists its payload's fields by its definition's schema", async () => {
  const name = Q("send_email_fields");
  // The shape `spitfire schemas push` registers: a $ref into $defs named by the proto message.
  const schema = {
    $ref: "#/$defs/shop.SendEmail",
    $defs: {
      "shop.SendEmail": {
        title: "shop.SendEmail",
        type: "object",
        properties: { to: { type: "string", description: "The recipient." }, cc: { type: "array", items: { type: "string" } } },
      },
    },
  };
  try {
    await api("POST", "/api/job-definitions", { definitions: [{ name, queue: Q("emails"), schema, validate: true }] });
  } catch (err) {
    if (String(err).includes(": 404 ")) return; // a server without job definitions: nothing to show
    throw err;
  }
  const job = await enqueue(Q("emails"), name, { payload: { to: "a@b.c" } });
  const { context, page, errors } = await open();
  try {
    await page.goto(`${BASE}/jobs/${job.id}`);
    const fields = page.locator("[data-testid=payload-fields]");
    await fields.locator("text=checked at enqueue").waitFor();
    const to = fields.locator("tr", { has: page.locator("td.mono:text-is('to')") });
    await to.locator("td:text-is('string')").waitFor();
    await to.locator('td:text-is(\'"a@b.c"\')').waitFor();
    assert.equal(await to.locator("td.mono").first().getAttribute("title"), "The recipient.");
    const cc = fields.locator("tr", { has: page.locator("td.mono:text-is('cc')") });
    await cc.locator("td:text-is('array of string')").waitFor();
    await cc.locator("text=default").waitFor();
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
  }
});

test("the login flow with --auth-token", async () => {
  const base = process.env.SPITFIRE_AUTH_URL;
  const token = process.env.SPITFIRE_TOKEN;
  assert.ok(base && token, "SPITFIRE_AUTH_URL and SPITFIRE_TOKEN are set");
  // The first loads answer 401 by design: that is what brings up the login screen.
  const { context, page, errors } = await open({ allow: ["/api/"] });
  const urls = [];
  page.on("request", (r) => urls.push(r.url()));
  try {
    await page.goto(`${base}/queues`);
    await page.waitForSelector("input[type=password]");
    await page.fill("input[type=password]", "not-the-token");
    await page.click("button:text('Sign in')");
    await page.waitForSelector(".error-box:text('not the server')");
    await page.fill("input[type=password]", token);
    await page.click("button:text('Sign in')");
    await page.waitForSelector("h1:text('Queues')");
    // The event stream is read with the token in the Authorization header: it connects.
    await page.waitForSelector("[data-testid=connection][data-status=open]");
    assert.equal(await page.evaluate(() => sessionStorage.getItem("spitfire.token")), token);
    assert.ok(!urls.some((u) => u.includes(token)), "the token never appears in a URL");
    // A reload keeps the session (session storage), a new tab's session does not exist.
    await page.reload();
    await page.waitForSelector("h1:text('Queues')");
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
  }
});

test("the 390 px layout has no horizontal scroll", async () => {
  const dead = await firstDead();
  const { context, page, errors } = await open({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
  try {
    for (const p of PAGES) {
      await page.goto(BASE + p.path.replace("{dead}", dead));
      await page.waitForSelector(p.ready);
      await page.waitForSelector(p.data);
      const width = await page.evaluate(() => document.documentElement.scrollWidth);
      assert.ok(width <= 390, `${p.path} is ${width} px wide at 390 px`);
    }
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
  }
});

/** A server of this test's own on a fixed port (SPITFIRE_RESTART: {"python", "data_dir", "port"}),
 * so that it can be killed and started again at the same address. */
function startServer({ python, data_dir: dataDir, port }) {
  const proc = spawn(
    python,
    ["-m", "spitfire.server.cli", "--data-dir", dataDir, "--listen", "127.0.0.1:0", "--http", `127.0.0.1:${port}`, "--no-quic"],
    { stdio: ["ignore", "ignore", "inherit"] },
  );
  return proc;
}

async function waitReady(url, ms = 30_000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    try {
      if ((await fetch(`${url}/ready`)).ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} not ready within ${ms} ms`);
}

test("reconnects after a server restart (SIGKILL) and resyncs", { skip: !process.env.SPITFIRE_RESTART && "SPITFIRE_RESTART is not set" }, async () => {
  const spec = JSON.parse(process.env.SPITFIRE_RESTART);
  const url = `http://127.0.0.1:${spec.port}`;
  let proc = startServer(spec);
  const { context, page, errors } = await open({ allow: ["/api/"] }); // requests fail while it is down
  try {
    await waitReady(url);
    const queue = Q("restart");
    const before = await api("POST", `/api/queues/${queue}/jobs`, { name: "a" }, url);
    await page.goto(`${url}/queues/${queue}`);
    await page.waitForSelector(`tr[data-job-id="${before.id}"]`);
    await page.waitForSelector("[data-testid=connection][data-status=open]");
    proc.kill("SIGKILL");
    await new Promise((r) => proc.once("exit", r));
    await page.waitForSelector("[data-testid=connection][data-status=reconnecting]");
    proc = startServer(spec);
    await waitReady(url);
    await page.waitForSelector("[data-testid=connection][data-status=open]", { timeout: 30_000 });
    const afterRestart = await api("POST", `/api/queues/${queue}/jobs`, { name: "b" }, url);
    await page.waitForSelector(`tr[data-job-id="${afterRestart.id}"]`);
    await page.waitForSelector(`tr[data-job-id="${before.id}"]`); // recovered from the log
    assert.deepEqual(errors.filter((e) => !e.startsWith("Failed to load resource")), []);
  } finally {
    await context.close();
    proc.kill("SIGTERM");
    await new Promise((r) => (proc.exitCode !== null ? r() : proc.once("exit", r)));
  }
});

test("first render of every page", { skip: !process.env.SPITFIRE_TIMINGS && "SPITFIRE_TIMINGS is not set" }, async () => {
  // Time from navigation to the page's data on screen, cold (a new context per page: no cache).
  const dead = await firstDead().catch(() => null);
  const out = {};
  for (const p of PAGES) {
    if (p.path.includes("{dead}") && !dead) continue;
    const { context, page, errors } = await open();
    try {
      const started = Date.now();
      await page.goto(BASE + p.path.replace("{dead}", dead ?? ""));
      await page.waitForSelector(p.ready);
      await page.waitForSelector(p.data);
      out[p.name] = Date.now() - started;
      assert.deepEqual(errors, [], `console errors on ${p.path}`);
    } finally {
      await context.close();
    }
  }
  console.log(`TIMINGS ${JSON.stringify(out)}`);
  const limit = Number(process.env.SPITFIRE_TIMINGS);
  for (const [name, ms] of Object.entries(out)) assert.ok(ms < limit, `${name}: first render ${ms} ms (limit ${limit} ms)`);
});

test("screenshots", { skip: !process.env.SCREENSHOTS && "SCREENSHOTS is not set" }, async () => {
  const dir = process.env.SCREENSHOTS;
  mkdirSync(dir, { recursive: true });
  const dead = await firstDead();
  for (const scheme of ["light", "dark"]) {
    const { context, page } = await open({ colorScheme: scheme });
    try {
      // The jobs page as people use it most: one queue's dead jobs with their errors.
      const shots = PAGES.filter((x) => x.name !== "jobs" && x.name !== "search").map((x) =>
        x.name === "jobs-dead" ? { ...x, name: "jobs", path: "/jobs?queue=reports&state=dead", data: "tr[data-job-id] .row-error" } : x,
      );
      for (const p of shots) {
        await page.goto(BASE + p.path.replace("{dead}", dead));
        await page.waitForSelector(p.ready);
        await page.waitForSelector(p.data);
        await page.waitForSelector("[data-testid=connection][data-status=open]");
        if (p.name === "overview") await page.waitForTimeout(20_000); // a third of the realtime minute
        await page.screenshot({ path: join(dir, `${p.name}-${scheme}.png`), fullPage: true });
      }
      // A running job of the SDK worker, with the progress it reported.
      const running = (await api("GET", "/api/jobs?queue=images&state=running&limit=1")).jobs[0];
      assert.ok(running, "the screenshot worker runs a job of queue images");
      await page.goto(`${BASE}/jobs/${running.id}`);
      await page.waitForSelector("[role=progressbar]");
      await page.screenshot({ path: join(dir, `job-running-${scheme}.png`), fullPage: true });
    } finally {
      await context.close();
    }
  }
  const { context, page } = await open({ viewport: { width: 390, height: 844 }, isMobile: true });
  try {
    for (const [name, path] of [["overview", "/"], ["jobs", "/jobs?queue=reports&state=dead"]]) {
      await page.goto(BASE + path);
      await page.waitForSelector(name === "jobs" ? "tr[data-job-id]" : "[data-testid=count-dead]");
      await page.screenshot({ path: join(dir, `${name}-phone-light.png`), fullPage: true });
    }
  } finally {
    await context.close();
  }
});
