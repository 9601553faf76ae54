"""Golden frames of every message type (``vectors.json``, package data); ``generate.py`` writes them."""
