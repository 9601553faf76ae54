"""The wire protocol shared by server and SDKs (arrives with the network server)."""
