"""/openapi.json describes every route the app registers, with each of its methods (a route added
to `dashboard/app.py` without its description fails here)."""

from __future__ import annotations

import re
from pathlib import Path

from httphelpers import HttpServer

from spitfire.dashboard.openapi import openapi_document

APP = Path(__file__).parents[2] / "dashboard" / "app.py"
_ROUTE = re.compile(r'r\.add_(get|post|delete|put|patch)\("([^"]+)"')


def test_every_registered_route_is_described() -> None:
    routes = _ROUTE.findall(APP.read_text())
    assert len(routes) > 20
    paths = openapi_document()["paths"]
    missing = [
        f"{method.upper()} {path}"
        for method, path in routes
        if path != "/" and method not in paths.get(path, {})
    ]
    assert missing == []


def test_the_served_document_has_the_new_routes(server: HttpServer) -> None:
    doc = server.http.get("/openapi.json").json()
    assert "post" in doc["paths"]["/api/jobs:bulk"] and "post" in doc["paths"]["/api/jobs/{id}/requeue"]
    params = {p["name"] for p in doc["paths"]["/api/jobs"]["get"]["parameters"]}
    assert params >= {"q", "queue", "state", "name", "after", "before", "order", "limit", "cursor"}
    schemas = doc["components"]["schemas"]
    assert {"BulkIn", "BulkOut", "ServerOut", "WorkerOut"} <= set(schemas)
    assert "possibly_aborted" in schemas["WorkerList"]["properties"]
