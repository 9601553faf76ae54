"""The dashboard single-page app: the built assets of ``dashboard/web`` (in ``dashboard/static``,
shipped as package data) served at ``/`` with the SPA fallback.

Every GET path that is not the API's (``/api`` and below, ``/metrics``, ``/health``, ``/ready``,
``/openapi.json``) answers ``index.html``, so deep links and reloads work; the router of the app
then shows the page, or its own "not found". Hashed files under ``/assets/`` are answered with a
year-long immutable cache (their names change with their content); ``index.html`` is revalidated
on every load, so a new server version is picked up at once. Nothing here needs the auth token:
the files hold no data, and the app itself asks for the token (its login screen) when the API
answers 401.

The files are read once, at start-up, into memory (a few hundred KiB): no path from a request is
ever joined to a directory, so no request can read another file.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path

from blacksheep import Content, Request, Response

#: Where ``npm run build`` writes (dashboard/web/vite.config.ts).
STATIC_DIR = Path(__file__).parent / "static"
#: Paths (and their subpaths) that belong to the server, never to the app.
SERVER_PREFIXES = ("/api",)
SERVER_PATHS = frozenset({"/metrics", "/health", "/ready", "/openapi.json"})
_IMMUTABLE = b"public, max-age=31536000, immutable"
#: Nothing the page loads or connects to may come from elsewhere (no CDN, no fonts, no beacons);
#: inline style attributes are allowed (the charts size their canvases with them), inline scripts not.
CSP = (
    b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    b"connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; frame-ancestors 'none'"
)
_REVALIDATE = b"no-cache"
_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json",
    ".txt": "text/plain; charset=utf-8",
    ".woff2": "font/woff2",
    ".png": "image/png",
    ".ico": "image/x-icon",
}

#: Served when the assets were never built (a checkout without dashboard/static).
_NOT_BUILT = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>Spitfire</title></head>
<body style="font-family: system-ui, sans-serif; max-width: 40em; margin: 2em auto">
<h1>Spitfire</h1>
<p>The dashboard's assets are missing from this installation (dashboard/static). Build them with
<code>cd dashboard/web &amp;&amp; npm ci &amp;&amp; npm run build</code>. The HTTP API is served
at <a href="/api/stats">/api</a>.</p>
</body></html>
"""


def _content_type(name: str) -> bytes:
    suffix = Path(name).suffix.lower()
    kind = _TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"
    return kind.encode()


class Spa:
    """The built dashboard, held in memory."""

    def __init__(self, root: Path = STATIC_DIR) -> None:
        index = root / "index.html"
        self.built = index.is_file()
        self.index = index.read_bytes() if self.built else _NOT_BUILT
        #: URL path -> (content type, bytes, cache control) of every file but index.html.
        self.files: dict[str, tuple[bytes, bytes, bytes]] = {}
        if self.built:
            for path in sorted(root.rglob("*")):
                if not path.is_file() or path == index:
                    continue
                rel = path.relative_to(root).as_posix()
                cache = _IMMUTABLE if rel.startswith("assets/") else _REVALIDATE
                self.files["/" + rel] = (_content_type(rel), path.read_bytes(), cache)

    @staticmethod
    def serves(request: Request) -> bool:
        """Whether the request is the app's: a GET (or HEAD) of a path that is not the server's."""
        if request.method not in ("GET", "HEAD"):
            return False
        path = request.path
        if path in SERVER_PATHS:
            return False
        return not any(path == p or path.startswith(p + "/") for p in SERVER_PREFIXES)

    def response(self, request: Request) -> Response:
        """The file at the request's path, 404 for a missing file under /assets/, else index.html."""
        path = request.path
        found = self.files.get(path)
        if found is not None:
            kind, data, cache = found
            return Response(200, [(b"Cache-Control", cache)], Content(kind, data))
        if path.startswith("/assets/"):
            # A hashed asset that is not there (an old index.html cached somewhere): a real 404,
            # never index.html, which a browser would try to run as a script.
            return Response(404, [(b"Cache-Control", _REVALIDATE)], Content(b"text/plain", b"not found"))
        headers = [
            (b"Cache-Control", _REVALIDATE),
            (b"X-Content-Type-Options", b"nosniff"),
            (b"Content-Security-Policy", CSP),
            (b"Referrer-Policy", b"no-referrer"),
        ]
        return Response(200, headers, Content(b"text/html; charset=utf-8", self.index))


__all__ = ["CSP", "STATIC_DIR", "Spa"]
