"""Spitfire: a durable background job queue and scheduler.

This package is the Python SDK; it imports only `spitfire.protocol` so that producers and workers
need none of the server's dependencies. The server lives in `spitfire.server`.
"""

__version__ = "0.1.0"
