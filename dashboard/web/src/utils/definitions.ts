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

/** One top-level field of a job's payload as its definition's schema declares it. */
export interface PayloadField {
  name: string;
  /** The field's type in a few words: "string", "integer", "array of Size", "example.jobs.Urgency"... */
  type: string;
  description: string;
  /** Whether the payload sets it (else the worker takes its default). */
  set: boolean;
  value: unknown;
}

type Node = Record<string, unknown>;

const isNode = (v: unknown): v is Node => !!v && typeof v === "object" && !Array.isArray(v);

/** A `$ref` into `$defs`, resolved one step (undefined when it points elsewhere). */
function resolve(node: Node, defs: Node): Node | undefined {
  const ref = node.$ref;
  if (typeof ref !== "string") return node;
  const target = ref.startsWith("#/$defs/") ? defs[ref.slice("#/$defs/".length)] : undefined;
  return isNode(target) ? target : undefined;
}

/** The short name of a `$defs` entry: its title's last dotted part (a proto message's own name). */
function refName(node: Node, defs: Node): string | undefined {
  const target = typeof node.$ref === "string" ? resolve(node, defs) : undefined;
  if (!target) return undefined;
  const title = typeof target.title === "string" ? target.title : String(node.$ref).slice("#/$defs/".length);
  return title.split(".").pop() ?? title;
}

function typeText(node: unknown, defs: Node, depth = 0): string {
  if (!isNode(node) || depth > 4) return "any";
  const named = refName(node, defs);
  if (named) return named;
  if (isNode(node.then)) return `${typeText(node.then, defs, depth + 1)} or null`; // a nullable message
  if (Array.isArray(node.anyOf)) return node.anyOf.map((n) => typeText(n, defs, depth + 1)).join(" or ");
  if (Array.isArray(node.enum)) return `one of ${node.enum.map((v) => JSON.stringify(v)).join(", ")}`;
  const t = Array.isArray(node.type) ? node.type.join(" or ") : typeof node.type === "string" ? node.type : "any";
  if (t === "array") return `array of ${typeText(node.items, defs, depth + 1)}`;
  if (t === "object" && isNode(node.additionalProperties)) return `map of ${typeText(node.additionalProperties, defs, depth + 1)}`;
  return t;
}

/**
 * The payload's top-level fields by its definition's schema (msgspec's and `spitfire schemas push`'s
 * shape: a `$ref` into `$defs`, or a plain object schema): each declared field, its type, its
 * description and the payload's value, then any field the payload has that the schema does not
 * declare. [] when the schema declares no fields or the payload is not an object.
 */
export function payloadFields(schema: unknown, payload: unknown): PayloadField[] {
  if (!isNode(schema) || !isNode(payload)) return [];
  const defs = isNode(schema.$defs) ? schema.$defs : {};
  const root = resolve(schema, defs);
  const props = root && isNode(root.properties) ? root.properties : undefined;
  if (!props) return [];
  const fields: PayloadField[] = Object.entries(props).map(([name, node]) => ({
    name,
    type: typeText(node, defs),
    description: isNode(node) && typeof node.description === "string" ? node.description : "",
    set: name in payload,
    value: payload[name],
  }));
  for (const [name, value] of Object.entries(payload)) {
    if (!(name in props)) fields.push({ name, type: "not in the schema", description: "", set: true, value });
  }
  return fields;
}
