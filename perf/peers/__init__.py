"""Peer job queues side by side with Spitfire.

- `perf.peers.base`: the workload contract (`PeerSpec`, `Skip`, the shared drivers); no peer imports.
- `perf.peers.runner`: runs one adapter's workload in the peers venv (``.venv/peers``, made by
  ``make perf-peers``); `run_peer` calls it from Spitfire's venv and turns failures into skips.
- `perf.peers.redis_service`: a throwaway redis-server (defaults, or ``appendfsync always``).
- `perf.peers.adapters`: one ``<name>_peer.py`` per peer, plus the task modules its workers load.
- `perf.peers.external`: drivers for the peers that are not Python (BullMQ's Node program in
  ``perf/peers/node/``, Sidekiq's Ruby programs in ``perf/peers/ruby/``): run them, parse their
  JSON timings into the same results, time their workers.

Nothing here imports spitfire or a peer library at import time.
"""
