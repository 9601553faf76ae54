"""Spitfire: a durable background job queue and scheduler.

This package is the Python SDK; it imports only `spitfire.protocol` so that producers and workers
need none of the server's dependencies. The server lives in `spitfire.server`.

    import spitfire
    with spitfire.Client("tcp://127.0.0.1:7878") as client:
        job_id = client.enqueue("emails", "send_email", {"to": "a@b.c"})

    app = spitfire.App()

    @app.job(queue="emails", max_attempts=5)
    def send_email(to: str) -> None: ...

    send_email.enqueue(to="a@b.c")       # a worker runs it: `spitfire worker module:app`
"""

__version__ = "0.1.0"

from spitfire.protocol.messages import Backoff

from ._context import JobContext, context
from .app import App, CronSchedule, JobFunction
from .client import AsyncClient
from .errors import (
    BadRequest,
    Busy,
    Conflict,
    ConnectionLost,
    InvalidURL,
    JobArgumentError,
    JobCancelled,
    JobError,
    JobFailed,
    JobNotFound,
    NoSpace,
    NotConnected,
    NotFound,
    NotLeader,
    ProtocolError,
    QueueNotFound,
    RequestTimeout,
    ScheduleNotFound,
    ServerError,
    SpitfireError,
    TLSVerificationFailed,
    TooLarge,
    Unauthorized,
    UnsupportedVersion,
    WaitTimeout,
)
from .models import (
    AsyncJobId,
    AttemptError,
    Job,
    JobDefinition,
    JobId,
    JobPage,
    Progress,
    PurgeResult,
    QueueStats,
    Schedule,
    ScheduleOptions,
    Stats,
    Transition,
    WorkerInfo,
)
from .outcomes import Permanent, RetryAfter
from .sync import Client
from .worker import Worker

__all__ = [
    "App",
    "AsyncClient",
    "AsyncJobId",
    "AttemptError",
    "Backoff",
    "BadRequest",
    "Busy",
    "Client",
    "Conflict",
    "ConnectionLost",
    "CronSchedule",
    "InvalidURL",
    "Job",
    "JobArgumentError",
    "JobCancelled",
    "JobContext",
    "JobDefinition",
    "JobError",
    "JobFailed",
    "JobFunction",
    "JobId",
    "JobNotFound",
    "JobPage",
    "NoSpace",
    "NotConnected",
    "NotFound",
    "NotLeader",
    "Permanent",
    "Progress",
    "ProtocolError",
    "PurgeResult",
    "QueueNotFound",
    "QueueStats",
    "RequestTimeout",
    "RetryAfter",
    "Schedule",
    "ScheduleNotFound",
    "ScheduleOptions",
    "ServerError",
    "SpitfireError",
    "Stats",
    "TLSVerificationFailed",
    "TooLarge",
    "Transition",
    "Unauthorized",
    "UnsupportedVersion",
    "WaitTimeout",
    "Worker",
    "WorkerInfo",
    "__version__",
    "context",
]
