import { describe, expect, it } from "vitest";
import type { JobDefinition } from "../api/types";
import { argumentNames, describeDefaults, payloadFields } from "./definitions";

const base: JobDefinition = {
  name: "send_email",
  queue: "emails",
  priority: 0,
  max_attempts: null,
  backoff: null,
  timeout_ms: null,
  schema: null,
  validate: false,
  registered_by: "spitfire-python/0.1.0 web-1:812",
  created_at: 1,
  updated_at: 2,
};

describe("describeDefaults", () => {
  it("names only what the definition sets", () => {
    expect(describeDefaults(base)).toBe("server defaults");
    expect(
      describeDefaults({
        ...base,
        priority: 5,
        max_attempts: 3,
        timeout_ms: 30_000,
        backoff: { kind: "fixed", base: 2, factor: 2, cap: 3600, jitter: false },
      }),
    ).toBe("priority 5 · 3 attempts · 30 s lease · fixed backoff");
    expect(describeDefaults({ ...base, max_attempts: 1 })).toBe("1 attempt");
    expect(
      describeDefaults({ ...base, backoff: { kind: "delays", base: 1, factor: 2, cap: 3600, jitter: false, delays: [1, 5, 30] } }),
    ).toBe("delays 1, 5, 30 s");
  });
});

describe("argumentNames", () => {
  it("reads msgspec's schema of a function's parameters, required first", () => {
    const schema = {
      $ref: "#/$defs/send_email_args",
      $defs: {
        send_email_args: {
          type: "object",
          properties: { subject: { type: "string" }, to: { type: "string" } },
          required: ["to"],
        },
      },
    };
    expect(argumentNames(schema)).toEqual([
      { name: "to", required: true },
      { name: "subject", required: false },
    ]);
  });

  it("takes a plain object schema, and says nothing of anything else", () => {
    expect(argumentNames({ type: "object", properties: { n: {} } })).toEqual([{ name: "n", required: false }]);
    for (const odd of [null, true, "x", 3, { $ref: "#/$defs/missing" }, { properties: 7 }]) {
      expect(argumentNames(odd)).toEqual([]);
    }
  });
});

describe("payloadFields", () => {
  // The shape `spitfire schemas push` registers (schemas/example.proto's SendEmail, shortened).
  const schema = {
    $ref: "#/$defs/example.jobs.SendEmail",
    $defs: {
      "example.jobs.SendEmail": {
        title: "example.jobs.SendEmail",
        type: "object",
        properties: {
          to: { type: "string", description: "The recipient's address." },
          cc: { type: "array", items: { type: "string" } },
          urgency: { $ref: "#/$defs/example.jobs.Urgency" },
          crop: { if: { type: "object" }, then: { $ref: "#/$defs/example.jobs.Size" }, else: { type: "null" } },
          in_reply_to: { type: ["string", "null"] },
          tags: { type: "object", additionalProperties: { type: "string" } },
        },
      },
      "example.jobs.Urgency": { title: "example.jobs.Urgency", enum: [0, 1, 2] },
      "example.jobs.Size": { title: "example.jobs.Size", type: "object", properties: {} },
    },
  };

  it("lists the schema's fields with their types and the payload's values, then undeclared ones", () => {
    expect(payloadFields(schema, { to: "a@b.c", urgency: 2, extra: true })).toEqual([
      { name: "to", type: "string", description: "The recipient's address.", set: true, value: "a@b.c" },
      { name: "cc", type: "array of string", description: "", set: false, value: undefined },
      { name: "urgency", type: "Urgency", description: "", set: true, value: 2 },
      { name: "crop", type: "Size or null", description: "", set: false, value: undefined },
      { name: "in_reply_to", type: "string or null", description: "", set: false, value: undefined },
      { name: "tags", type: "map of string", description: "", set: false, value: undefined },
      { name: "extra", type: "not in the schema", description: "", set: true, value: true },
    ]);
  });

  it("says nothing without fields or an object payload", () => {
    expect(payloadFields(schema, [1, 2])).toEqual([]);
    expect(payloadFields(null, { a: 1 })).toEqual([]);
    expect(payloadFields({ $ref: "#/$defs/missing" }, { a: 1 })).toEqual([]);
  });
});
