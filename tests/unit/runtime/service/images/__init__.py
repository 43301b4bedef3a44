"""Unit tests of runtime.service.images (pure parsing and decisions; I/O behind httpx transports)."""
