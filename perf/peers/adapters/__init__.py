"""Peer adapters: ``<name>_peer.py`` exposes ``PEER = PeerSpec(...)`` (see perf/peers/base.py);
``tasks_<name>.py`` holds the no-op task its worker processes load. Imported only in .venv/peers."""
