"""In-memory job index: ready, scheduled, leased, idempotency, history. No I/O."""
