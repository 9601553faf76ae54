"""Raft replication of engine commands (pysyncobj); arrives with high availability."""
