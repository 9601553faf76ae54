// Test helpers: a real spitfire-server on a free loopback port with its own data directory,
// stopped by PID; Python processes from the repository's .venv; bounded polling.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const REPO = resolve(fileURLToPath(new URL("../../..", import.meta.url)));
const VENV_BIN = process.env.SPITFIRE_VENV_BIN ?? join(REPO, ".venv", "bin");
export const PYTHON = join(VENV_BIN, "python");
export const SPITFIRE = join(VENV_BIN, "spitfire");
const SERVER = join(VENV_BIN, "spitfire-server");
/** Generous: two cores are shared with other test runs. */
export const WAIT_MS = 30_000;

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

if (!existsSync(SERVER)) {
  throw new Error(`no spitfire-server at ${SERVER}: run \`make install\` at the repository root (or set SPITFIRE_VENV_BIN)`);
}

/**
 * Starts spitfire-server on free ports (or `--listen` in `args`); resolves once it prints its
 * addresses. `dataDir`: an existing data directory (a restart), left in place by `stop` and `kill`.
 */
export async function startServer(args = [], { dataDir: existing } = {}) {
  const dataDir = existing ?? mkdtempSync(join(tmpdir(), "spitfire-ts-"));
  const proc = spawn(SERVER, ["--data-dir", dataDir, "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--no-quic", ...args], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  proc.stderr.on("data", (c) => (err += c));
  const url = await new Promise((resolveUrl, reject) => {
    const timer = setTimeout(() => reject(new Error(`spitfire-server did not start within ${WAIT_MS} ms:\n${out}\n${err}`)), WAIT_MS);
    proc.stdout.on("data", (c) => {
      out += c;
      const m = /binary:\s+(tcp:\/\/\S+)/.exec(out);
      if (m && out.includes("stop with")) {
        clearTimeout(timer);
        resolveUrl(m[1]);
      }
    });
    proc.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`spitfire-server exited with ${code}:\n${out}\n${err}`));
    });
  });
  proc.stdout.resume();
  const http = /http:\s+(http:\/\/\S+)\/api/.exec(out)?.[1];
  return {
    url,
    http,
    dataDir,
    pid: proc.pid,
    log: () => err,
    async stop() {
      await stopProcess(proc);
      if (existing === undefined) rmSync(dataDir, { recursive: true, force: true });
    },
    /** SIGKILL by PID (no GOAWAY, no clean shutdown); the data directory stays for a restart. */
    async kill() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      const exited = new Promise((r) => proc.once("exit", r));
      process.kill(proc.pid, "SIGKILL");
      await exited;
    },
  };
}

/** SIGTERM by PID, then SIGKILL if it has not exited within `ms`. */
export async function stopProcess(proc, ms = 10_000) {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise((r) => proc.once("exit", r));
  process.kill(proc.pid, "SIGTERM");
  const timer = setTimeout(() => {
    if (proc.exitCode === null && proc.signalCode === null) process.kill(proc.pid, "SIGKILL");
  }, ms);
  await exited;
  clearTimeout(timer);
}

/** Runs a command to its end (bounded by `ms`); resolves with its exit code and output. */
export function run(cmd, args, { ms = WAIT_MS, env = {}, cwd } = {}) {
  return new Promise((resolveRun, reject) => {
    const proc = spawn(cmd, args, { env: { ...process.env, ...env }, cwd, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    proc.stdout.on("data", (c) => (stdout += c));
    proc.stderr.on("data", (c) => (stderr += c));
    const timer = setTimeout(() => {
      process.kill(proc.pid, "SIGKILL");
      reject(new Error(`${cmd} ${args.join(" ")} did not finish within ${ms} ms:\n${stdout}\n${stderr}`));
    }, ms);
    proc.on("exit", (code) => {
      clearTimeout(timer);
      resolveRun({ code, stdout, stderr });
    });
  });
}

/** Starts a long-running process; stop it with stopProcess. */
export function startProcess(cmd, args, { env = {}, cwd } = {}) {
  const proc = spawn(cmd, args, { env: { ...process.env, ...env }, cwd, stdio: ["ignore", "pipe", "pipe"] });
  proc.output = "";
  proc.stdout.on("data", (c) => (proc.output += c));
  proc.stderr.on("data", (c) => (proc.output += c));
  return proc;
}

/** Polls `fn` until it returns something truthy; fails after `ms`. */
export async function waitFor(fn, what, ms = WAIT_MS) {
  const deadline = Date.now() + ms;
  for (let pause = 10; ; pause = Math.min(pause * 1.5, 200)) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(pause);
  }
}

/** Polls GET until the job is in one of `states`. */
export async function waitState(client, id, states, ms = WAIT_MS) {
  return waitFor(async () => {
    const job = await client.get(id);
    return states.includes(job.state) ? job : null;
  }, `job ${id} to be ${states.join("/")}`, ms);
}

export { tmpdir, join };
