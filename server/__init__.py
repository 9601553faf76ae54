"""The queue engine, its configuration and the spitfire-server command."""
