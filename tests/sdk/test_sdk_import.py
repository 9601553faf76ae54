"""`import spitfire` loads the SDK only: never the server, the WAL, the index or aioquic."""

from __future__ import annotations

import subprocess
import sys


def test_importing_spitfire_does_not_import_the_server() -> None:
    code = (
        "import sys, spitfire, spitfire.cli\n"
        "bad = [m for m in sys.modules if m.startswith(('spitfire.server', 'spitfire.wal', "
        "'spitfire.index', 'aioquic', 'spitfire.protocol.quic'))]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == ""


def test_public_names() -> None:
    import spitfire

    names = (
        "Client AsyncClient App Worker Job Permanent RetryAfter context JobNotFound Busy Unauthorized "
        "NoSpace TooLarge BadRequest Conflict UnsupportedVersion ServerError ConnectionLost NotConnected "
        "__version__"
    )
    for name in names.split():
        assert hasattr(spitfire, name), name
    assert callable(spitfire.context)
