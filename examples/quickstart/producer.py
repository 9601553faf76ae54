"""Enqueue a few jobs, then show what became of them. Run after `spitfire worker tasks:app` starts
(or before: jobs wait in the server until a worker takes them)."""

from __future__ import annotations

import time

from tasks import app, build_report, send_email

import spitfire


def main() -> None:
    # Arguments are checked against the type hints here, before anything is sent.
    ids = [
        send_email.enqueue(to="ada@example.com"),
        send_email.options(delay=2.0, idempotency_key="welcome-grace").enqueue("grace@example.com"),
        send_email.enqueue(to="not-an-address"),  # ends dead: raises Permanent
        build_report.options(priority=9).enqueue(report_id=42),
    ]
    try:
        build_report.enqueue(report_id="forty-two")
    except spitfire.JobArgumentError as exc:
        print(f"refused before sending: {exc}")

    with spitfire.Client() as client:  # the plain client: any queue, any handler name
        ids.append(client.enqueue("emails", "send_email", {"to": "linus@example.com"}))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            jobs = [client.get(job_id) for job_id in ids]
            if all(job.finished for job in jobs):
                break
            time.sleep(0.25)
        for job in jobs:
            outcome = job.result if job.state == "succeeded" else job.last_error
            print(f"{job.id}  {job.name:<13} {job.state:<10} attempts={job.attempts}  {outcome}")
    app.close()


if __name__ == "__main__":
    main()
