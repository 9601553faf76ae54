// Every protocol error code maps to its own instanceof-checkable class.
import { test } from "node:test";
import assert from "node:assert/strict";
import { errorFromWire } from "../dist/errors.js";
import * as sdk from "../dist/index.js";

test("error codes map to typed errors", () => {
  const cases = [
    ["NOT_FOUND", "job", sdk.JobNotFound], ["NOT_FOUND", "queue", sdk.QueueNotFound],
    ["NOT_FOUND", "schedule", sdk.ScheduleNotFound], ["NOT_FOUND", null, sdk.NotFound],
    ["BUSY", null, sdk.Busy], ["UNAUTHORIZED", null, sdk.Unauthorized], ["NO_SPACE", null, sdk.NoSpace],
    ["BAD_REQUEST", null, sdk.BadRequest], ["TOO_LARGE", null, sdk.TooLarge], ["CONFLICT", null, sdk.Conflict],
    ["UNSUPPORTED_VERSION", null, sdk.UnsupportedVersion], ["INTERNAL", null, sdk.ServerError],
    ["SOMETHING_NEW", null, sdk.ServerError],
  ];
  for (const [code, kind, cls] of cases) {
    const err = errorFromWire(code, "msg", "field-x", code === "BUSY" ? 0.5 : null, kind);
    assert.ok(err instanceof cls, `${code} ${kind}`);
    assert.ok(err instanceof sdk.SpitfireError && err instanceof Error);
    assert.equal(err.code, code);
    assert.equal(err.field, "field-x");
    assert.equal(err.name, cls.name);
  }
  assert.equal(errorFromWire("BUSY", "full", null, 0.5).retryAfterMs, 500);
  assert.ok(errorFromWire("NOT_FOUND", "m", null, null, "job") instanceof sdk.NotFound);
  assert.ok(!(errorFromWire("CONFLICT", "m", null, null) instanceof sdk.NotFound));
});

test("Permanent and RetryAfter", () => {
  assert.equal(new sdk.Permanent("x").name, "Permanent");
  assert.equal(new sdk.RetryAfter(1500).delayMs, 1500);
  assert.throws(() => new sdk.RetryAfter(-1), RangeError);
});
