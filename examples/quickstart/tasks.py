"""The quickstart's jobs: one sync, one async. Run them with `spitfire worker tasks:app`."""

from __future__ import annotations

import asyncio

import spitfire

# No URL: SPITFIRE_URL, else tcp://127.0.0.1:7878 (the server's default).
app = spitfire.App()


@app.job(queue="emails", max_attempts=5)
def send_email(to: str, subject: str = "Welcome!") -> dict[str, str]:
    """A sync job: runs on the worker's thread pool. The return value is stored as the result."""
    ctx = spitfire.context()
    if "@" not in to:
        # Retrying cannot fix a bad address: dead at once, no more attempts.
        raise spitfire.Permanent(f"{to!r} is not an email address")
    print(f"[attempt {ctx.attempt}] sending {subject!r} to {to}")
    return {"to": to, "status": "sent"}


@app.job(queue="reports", timeout=30.0)
async def build_report(report_id: int, pages: int = 3) -> str:
    """An async job: runs on the worker's event loop, many at once."""
    for _ in range(pages):
        await asyncio.sleep(0.1)  # pretend to render a page
    return f"report-{report_id}.pdf ({pages} pages)"
