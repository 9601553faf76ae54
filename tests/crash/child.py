"""Crash-test child: append records as fast as possible and report each acknowledged one.

Usage: python child.py DATA_DIR MODE SEED. Prints "ready" once the log is open, then one line
"<lsn> <id>" per acknowledged record (GROUP/SYNC: after its commit future; ASYNC: after append).
The parent SIGKILLs this process at a random moment and checks every reported record survived.
"""

from __future__ import annotations

import asyncio
import sys

import uvloop

from spitfire.wal import Durability, FileStorage, WalConfig

#: Small segments so that kills land around rolls, too.
CONFIG = WalConfig(segment_size=256 * 1024, prepare_ahead=0.3)
TASKS = 16


def body_for(ident: int) -> bytes:
    """The body of record ``ident`` (the parent computes the same)."""
    stem = f"id={ident};".encode()
    return stem * (1 + ident % 23)


async def main(data_dir: str, mode: Durability, seed: int) -> None:
    storage = FileStorage(data_dir, CONFIG)
    log, _ = storage.open_log("crash", mode)
    next_id = seed * 10_000_000
    out = sys.stdout
    out.write("ready\n")
    out.flush()

    async def writer() -> None:
        nonlocal next_id
        while True:
            ident = next_id
            next_id += 1
            lsn = log.append(1 + ident % 3, body_for(ident))
            future = log.commit(lsn)
            if future is not None:
                await future
            else:
                await asyncio.sleep(0)
            out.write(f"{lsn} {ident}\n")
            out.flush()

    await asyncio.gather(*(writer() for _ in range(TASKS if mode is not Durability.SYNC else 4)))


if __name__ == "__main__":
    uvloop.run(main(sys.argv[1], Durability(sys.argv[2]), int(sys.argv[3])))
