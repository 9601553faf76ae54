"""spitfire-server's tracing flags: --otel and --trace-url-template, parsed and checked."""

from __future__ import annotations

import pytest

from spitfire.server import options as options_mod
from spitfire.server.cli import main, parse_options
from spitfire.server.options import OptionsError, ServerOptions


def test_tracing_is_off_by_default() -> None:
    options = parse_options([])
    assert options.otel is False
    assert options.trace_url_template is None


def test_the_flags_are_parsed() -> None:
    options = parse_options(["--otel", "--trace-url-template", "https://tempo.example/trace/{trace_id}"])
    assert options.otel is True
    assert options.trace_url_template == "https://tempo.example/trace/{trace_id}"


@pytest.mark.parametrize(
    "template",
    ["https://tempo.example/trace/", "tempo.example/{trace_id}", "javascript:alert('{trace_id}')", ""],
)
def test_a_template_without_the_id_or_not_http_is_refused(
    template: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(OptionsError, match=r"--trace-url-template .*\{trace_id\}"):
        ServerOptions(trace_url_template=template)
    assert main(["--trace-url-template", template]) == 2
    assert "--trace-url-template" in capsys.readouterr().err


def test_otel_without_the_sdk_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(options_mod, "_missing", lambda module: module == "opentelemetry.sdk")
    with pytest.raises(OptionsError, match=r"pip install 'spitfire\[otel\]'"):
        ServerOptions(otel=True)


def test_missing_finds_absent_packages() -> None:
    assert options_mod._missing("opentelemetry.sdk") is False  # the dev extra has it
    assert options_mod._missing("no_such_package_here.sub") is True
