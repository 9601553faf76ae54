"""The dashboard's files at / (dashboard/spa.py): the SPA fallback, cache
headers, no token needed for the files (the app's login asks for it), the API's paths untouched."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "http"))
from httphelpers import HttpServer, http_server

from spitfire.dashboard.spa import CSP, STATIC_DIR, Spa

TOKEN = "spa-token"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    with http_server(tmp_path_factory.mktemp("spa") / "data", "--auth-token", TOKEN) as proc:
        yield proc


def _asset(server: HttpServer, suffix: str) -> str:
    html = server.http.get("/").text
    found = re.search(rf'"(/assets/[^"]+\.{suffix})"', html)
    assert found, html
    return found.group(1)


def test_built_assets_are_committed() -> None:
    spa = Spa()
    assert spa.built, "dashboard/static/index.html is missing: run npm run build in dashboard/web"
    assert b'<div id="root">' in spa.index
    assert any(p.startswith("/assets/") and p.endswith(".js") for p in spa.files)


APP_PATHS = ["/", "/queues", "/queues/emails", "/jobs?state=dead", "/jobs/01abc", "/x/y/z"]


@pytest.mark.parametrize("path", APP_PATHS)
def test_every_app_path_answers_index_html_without_a_token(server: HttpServer, path: str) -> None:
    r = server.http.get(path)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["cache-control"] == "no-cache"
    # Nothing may be loaded from elsewhere: the browser enforces it (and the e2e tests see violations).
    assert r.headers["content-security-policy"] == CSP.decode()
    assert '<div id="root">' in r.text


def test_hashed_assets_are_cached_for_a_year(server: HttpServer) -> None:
    for suffix, kind in (("js", "text/javascript"), ("css", "text/css")):
        r = server.http.get(_asset(server, suffix))
        assert r.status_code == 200
        assert r.headers["content-type"].startswith(kind)
        assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert r.content == (STATIC_DIR / r.url.path.lstrip("/")).read_bytes()


def test_a_missing_asset_is_a_404_not_index_html(server: HttpServer) -> None:
    r = server.http.get("/assets/index-00000000.js")
    assert r.status_code == 404
    assert "<html" not in r.text


def test_no_path_reads_a_file_outside_the_build(server: HttpServer) -> None:
    for path in ("/assets/../../app.py", "/assets/%2e%2e/%2e%2e/app.py", "/../dashboard/spa.py"):
        r = server.http.get(path)
        assert "def " not in r.text, path


def test_the_servers_paths_are_not_the_app(server: HttpServer) -> None:
    assert server.http.get("/api/stats").status_code == 401
    assert server.http.get("/api/no/such/route").status_code == 401  # auth first, as before
    assert server.http.get("/metrics").status_code == 401
    assert server.http.get("/openapi.json").status_code == 401
    assert server.http.get("/health").json() == {"status": "ok", "checks": {}}
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    r = server.http.get("/api/no/such/route", headers=bearer)
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "ROUTE_NOT_FOUND"
    assert server.http.get("/api/stats", headers=bearer).status_code == 200


def test_other_methods_on_app_paths_still_need_the_token(server: HttpServer) -> None:
    assert server.http.post("/queues").status_code == 401
    r = server.http.post("/queues", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "ROUTE_NOT_FOUND"


def test_without_a_build_a_page_says_how_to_build(tmp_path: Path) -> None:
    spa = Spa(tmp_path)
    assert not spa.built
    assert b"npm run build" in spa.index
    assert spa.files == {}
