"""A Python SDK worker for the screenshots (tests/dashboard/test_browser.py, SPITFIRE_SCREENSHOTS=1):
its slow jobs are in flight while the pages are taken, and it reports host, pid and concurrency."""

from __future__ import annotations

import asyncio

import spitfire

app = spitfire.App()  # SPITFIRE_URL


@app.job(queue="images", timeout=120.0)
async def resize(image: str, sizes: list[int] | None = None) -> dict[str, object]:
    """Pretends to resize an image for a minute, reporting progress."""
    ctx = spitfire.context()
    targets = sizes or [64, 128, 256, 512, 1024]
    ctx.progress(0.4, f"resized 2 of {len(targets)} sizes")
    await asyncio.sleep(60)
    return {"image": image, "sizes": targets}
