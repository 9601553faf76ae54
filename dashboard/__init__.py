"""The HTTP API, live events, Prometheus metrics and dashboard of spitfire-server (blacksheep).

`create_app` builds the API over a running server's engine, service, dispatcher and backpressure;
`HttpServer` serves it with uvicorn on the server's own event loop.
"""

from .app import Dashboard, create_app
from .server import HttpServer

__all__ = ["Dashboard", "HttpServer", "create_app"]
