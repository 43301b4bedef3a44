"""Print a CRI log file (`<time> <stream> <P|F> <text>` lines) as the container wrote it."""

from __future__ import annotations

import sys


def print_log(path: str, offset: int = 0) -> int:
    """Write the CRI log at PATH from OFFSET to stdout/stderr; returns the new offset."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return offset
    end = data.rfind(b"\n") + 1
    for line in data[:end].split(b"\n")[:-1]:
        parts = line.split(b" ", 3)
        if len(parts) < 4:
            continue
        out = sys.stdout.buffer if parts[1] == b"stdout" else sys.stderr.buffer
        out.write(parts[3] + (b"\n" if parts[2] == b"F" else b""))
    sys.stdout.flush()
    sys.stderr.flush()
    return offset + end
