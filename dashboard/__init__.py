"""HTTP API, metrics and dashboard (blacksheep); arrives with the HTTP issue."""
