"""Compatibility surfaces: the APIs of other queues, served over the same engine on listeners of
their own (off by default; docs/compat.md)."""
