"""Integration tests of the node runtime service against real binaries (a real registry)."""
