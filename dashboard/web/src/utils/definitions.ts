// What the Definitions page shows of a job definition (GET /api/job-definitions).

import type { JobDefinition } from "../api/types";
import { duration } from "./format";

/** The definition's defaults in a few words, e.g. "priority 5 · 3 attempts · 30s lease · fixed backoff";
 * options left to the server's default are not named. */
export function describeDefaults(d: JobDefinition): string {
  const parts: string[] = [];
  if (d.priority) parts.push(`priority ${d.priority}`);
  if (d.max_attempts != null) parts.push(d.max_attempts === 1 ? "1 attempt" : `${d.max_attempts} attempts`);
  if (d.timeout_ms != null) parts.push(`${duration(d.timeout_ms / 1000)} lease`);
  if (d.backoff) parts.push(d.backoff.kind === "delays" ? `delays ${(d.backoff.delays ?? []).join(", ")} s` : `${d.backoff.kind} backoff`);
  return parts.length ? parts.join(" · ") : "server defaults";
}

/** The names of a schema's top-level arguments (msgspec's shape: a `$ref` into `$defs`), required
 * ones first; [] when the schema says nothing about them. */
export function argumentNames(schema: unknown): { name: string; required: boolean }[] {
  if (!schema || typeof schema !== "object") return [];
  let node = schema as Record<string, unknown>;
  const ref = node.$ref;
  const defs = node.$defs as Record<string, unknown> | undefined;
  if (typeof ref === "string" && ref.startsWith("#/$defs/") && defs) {
    const target = defs[ref.slice("#/$defs/".length)];
    if (target && typeof target === "object") node = target as Record<string, unknown>;
  }
  const props = node.properties;
  if (!props || typeof props !== "object") return [];
  const required = new Set(Array.isArray(node.required) ? (node.required as string[]) : []);
  const names = Object.keys(props as object).map((name) => ({ name, required: required.has(name) }));
  return [...names.filter((n) => n.required), ...names.filter((n) => !n.required)];
}
