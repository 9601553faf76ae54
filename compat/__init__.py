"""Compatibility adapters: the APIs of other job queues, served over Spitfire's engine on listeners of
their own (docs/compat.md). This layer sits beside ``dashboard``: it uses ``server`` (and the main
HTTP port's body, error and listener helpers in ``dashboard``), and nothing below it imports it."""
