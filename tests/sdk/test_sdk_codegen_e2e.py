"""A job declared once in a .proto file, end to end against a real spitfire-server: enqueued with
the generated Python helper, run by a Python worker whose handler takes the generated Struct.

A TypeScript producer of the same job runs where the TypeScript SDK is built (sdks/typescript/dist,
or $SPITFIRE_TS_SDK); elsewhere that test skips, saying so.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import msgspec
import pytest
from sdk_helpers import ServerProcess, run_burst

import spitfire
from spitfire.codegen import codegen

pytest.importorskip("grpc_tools", reason="spitfire codegen needs grpcio-tools (the spitfire[codegen] extra)")

PROTO = """\
syntax = "proto3";
package billing;
import "spitfire/options.proto";

enum Currency {
  CURRENCY_UNSPECIFIED = 0;
  CURRENCY_EUR = 1;
}

// Charge a customer's card.
message ChargeCard {
  option (spitfire.queue) = "QUEUE";
  option (spitfire.max_attempts) = 2;
  option (spitfire.priority) = 3;

  message LineItem {
    string sku = 1;
    uint32 quantity = 2;
  }

  string customer = 1;
  int64 cents = 2;
  repeated LineItem items = 3;
  Currency currency = 4;
  optional string note = 5;
}

message Refund {
  option (spitfire.queue) = "QUEUE";
  option (spitfire.job) = "refund-payment";
  string charge_id = 1;
}
"""


@pytest.fixture
def billing(tmp_path: Path, queue: str) -> Iterator[ModuleType]:
    """The generated Python of PROTO (its jobs on ``queue``), imported as ``sfgen_e2e.billing``."""
    src = tmp_path / "proto" / "billing.proto"
    src.parent.mkdir()
    src.write_text(PROTO.replace("QUEUE", queue))
    codegen("python", [src], tmp_path / "sfgen_e2e")
    (tmp_path / "sfgen_e2e" / "__init__.py").write_text("")
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module("sfgen_e2e.billing")
    finally:
        sys.path.remove(str(tmp_path))
        for name in [n for n in sys.modules if n.startswith("sfgen_e2e")]:
            del sys.modules[name]


def test_a_proto_job_is_enqueued_with_the_generated_helper_and_run_with_the_struct(
    server: ServerProcess, client: spitfire.Client, billing: ModuleType
) -> None:
    b = billing
    app = spitfire.App(server.url)
    charged: list[object] = []
    refunded: list[str] = []

    @b.CHARGE_CARD_JOB.handler(app)
    def charge_card(charge: b.ChargeCard) -> int:  # type: ignore[name-defined]
        charged.append(charge)
        return int(charge.cents) * 2

    @b.REFUND_PAYMENT_JOB.handler(app)
    async def refund(r: b.Refund) -> None:  # type: ignore[name-defined]
        await asyncio.sleep(0)
        refunded.append(f"{r.charge_id} attempt {spitfire.context().attempt}")

    payload = b.ChargeCard(
        customer="c-1",
        cents=2**40,
        items=[b.ChargeCard_LineItem(sku="sku-9", quantity=3)],
        currency=b.Currency.CURRENCY_EUR,
    )
    charge_id = b.enqueue_charge_card(client, payload, idempotency_key="charge-c-1")

    async def produce() -> str:
        async with spitfire.AsyncClient(server.url) as ac:
            job_id: str = await b.enqueue_refund_payment_async(ac, b.Refund(charge_id=charge_id))
            return job_id

    refund_id = asyncio.run(produce())
    with pytest.raises(spitfire.JobArgumentError, match=r"ChargeCard field 'items\[0\].quantity'"):
        b.enqueue_charge_card(client, b.ChargeCard(items=[b.ChargeCard_LineItem(quantity=-1)]))

    job = client.get(charge_id)
    assert (job.name, job.queue, job.max_attempts, job.priority) == (
        "charge_card",
        app.jobs["charge_card"].queue,
        2,
        3,
    )
    assert job.payload == {
        "customer": "c-1", "cents": 2**40, "items": [{"sku": "sku-9", "quantity": 3}], "currency": 1,
        "note": None,
    }  # fmt: skip
    worker = run_burst(app)
    assert worker.processed == 2 and worker.failed == 0  # the refused payload was never sent
    assert charged == [payload]
    assert refunded == [f"{charge_id} attempt 1"]
    assert client.get(charge_id).result == 2**41
    assert client.get(refund_id).state == "succeeded"


def test_a_payload_from_a_plain_producer_is_checked_by_the_struct_and_the_server(
    server: ServerProcess, client: spitfire.Client, billing: ModuleType, queue: str
) -> None:
    """Older or other producers send maps by field name: unknown fields are ignored, missing ones
    default. A schema job's worker registers it with validation on, so once it has, the server
    refuses a wrong type at enqueue, naming the field (before, the worker fails such a job at once:
    see test_a_payload_enqueued_before_any_registration_fails_in_the_worker)."""
    b = billing
    app = spitfire.App(server.url)
    seen: list[object] = []

    @b.CHARGE_CARD_JOB.handler(app)
    def charge_card(charge: b.ChargeCard) -> None:  # type: ignore[name-defined]
        seen.append(charge)

    app.register_jobs()
    ok = client.enqueue(queue, "charge_card", {"customer": "c-2", "added_later": True})
    with pytest.raises(spitfire.BadRequest, match="cents"):
        client.enqueue(queue, "charge_card", {"cents": "many"})
    run_burst(app)
    assert seen == [b.ChargeCard(customer="c-2")]
    assert client.get(ok).state == "succeeded"
    definition = next(d for d in client.job_definitions() if d.name == "charge_card")
    assert definition.validate and definition.schema is not None


def test_a_payload_enqueued_before_any_registration_fails_in_the_worker(
    billing: ModuleType, tmp_path: Path
) -> None:
    """A wrong type that reached the queue (no worker had registered the job yet) fails the job
    at once in the worker: retrying cannot fix it."""
    b = billing
    fresh = ServerProcess(tmp_path / "data").start()
    try:
        _fails_in_the_worker(b, fresh)
    finally:
        fresh.kill()


def _fails_in_the_worker(b: ModuleType, fresh: ServerProcess) -> None:
    with spitfire.Client(fresh.url) as c:
        bad = c.enqueue(b.CHARGE_CARD_JOB.queue, "charge_card", {"cents": "many"})
        app = spitfire.App(fresh.url)

        @b.CHARGE_CARD_JOB.handler(app)
        def charge_card(charge: b.ChargeCard) -> None:  # type: ignore[name-defined]
            raise AssertionError("a payload that does not fit must not reach the handler")

        run_burst(app)
        failed = c.get(bad)
        assert failed.state == "dead"
        assert "cents" in failed.errors[-1].error and "Expected `int`" in failed.errors[-1].error
        assert msgspec.msgpack.decode(failed.raw_payload) == {"cents": "many"}


def _typescript_sdk() -> Path:
    """The built TypeScript SDK: sdks/typescript here, or $SPITFIRE_TS_SDK (skips without one)."""
    root = Path(__file__).resolve().parents[2]
    sdk = Path(os.environ.get("SPITFIRE_TS_SDK") or root / "sdks" / "typescript")
    if shutil.which("node") is None:
        pytest.skip("node is not installed: no TypeScript producer")
    if not (sdk / "dist" / "index.js").exists():
        pytest.skip(
            f"no built TypeScript SDK at {sdk} (cd sdks/typescript && npm ci && npm run build, or set "
            "SPITFIRE_TS_SDK to one)"
        )
    return sdk


PRODUCER = """\
import { Client } from "SDK";
import { enqueueChargeCard, Currency } from "./billing.js";

const client = new Client(process.argv[2]);
try {
  const id = await enqueueChargeCard(client, {
    customer: "ts-1",
    cents: 2n ** 40n,
    items: [{ sku: "sku-ts", quantity: 2 }],
    currency: Currency.CURRENCY_EUR,
  }, { idempotencyKey: "ts-charge" });
  console.log(id);
} finally {
  await client.close();
}
"""


def test_a_typescript_producer_and_a_python_worker_share_the_proto(
    server: ServerProcess, client: spitfire.Client, billing: ModuleType, tmp_path: Path, queue: str
) -> None:
    """The same .proto, generated for both: enqueued by the TypeScript SDK with the generated
    ``enqueueChargeCard``, run by Python with the generated Struct."""
    sdk = _typescript_sdk()
    fixture_tsc = Path(__file__).resolve().parents[1] / "schemas" / "ts" / "node_modules" / ".bin" / "tsc"
    tsc = fixture_tsc if fixture_tsc.exists() else sdk / "node_modules" / ".bin" / "tsc"
    if not tsc.exists():
        pytest.skip("no tsc: npm ci in tests/schemas/ts")
    src = tmp_path / "ts-src" / "billing.proto"
    src.parent.mkdir()
    src.write_text(PROTO.replace("QUEUE", queue))
    out = tmp_path / "ts-out"
    codegen("typescript", [src], out)
    command = [str(tsc), "--strict", "--target", "es2022", "--module", "es2022", "--outDir", str(out)]
    done = subprocess.run([*command, str(out / "billing.ts")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    (out / "package.json").write_text('{"type": "module"}\n')
    (out / "produce.js").write_text(PRODUCER.replace("SDK", (sdk / "dist" / "index.js").as_uri()))
    done = subprocess.run(
        ["node", str(out / "produce.js"), server.url], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.strip()

    app = spitfire.App(server.url)
    charged: list[object] = []

    @billing.CHARGE_CARD_JOB.handler(app)
    def charge_card(charge: billing.ChargeCard) -> None:  # type: ignore[name-defined]
        charged.append(charge)

    run_burst(app)
    item = billing.ChargeCard_LineItem(sku="sku-ts", quantity=2)
    assert charged == [billing.ChargeCard(customer="ts-1", cents=2**40, items=[item], currency=1)]
    job = client.get(job_id)
    assert (job.state, job.max_attempts, job.priority) == ("succeeded", 2, 3)  # the schema's options
