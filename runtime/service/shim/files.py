"""Small file helpers of the shim: atomic writes, and reads of small files without the io
module's objects where the shim reads often (read_file)."""

from __future__ import annotations

import os


def read_file(path: str) -> bytes:
    """A small file's bytes through os calls: the io module's objects (a text wrapper, a
    buffer, a codec) would cost the shim pages it could share with the fork server."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def report(fd: int, line: str) -> None:
    """Write LINE to the readiness pipe and close it (the launcher reads to EOF)."""
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def write_atomic(path: str, data: bytes) -> None:
    """Readers see the old file or the whole new one. No fsync: what must survive is a
    crash of the daemon or of this shim (the page cache keeps the file); a crash of the
    machine ends the containers too, and the state directory with them (/run)."""
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.rename(tmp, path)


def tail(path: str, limit: int = 2000) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return ""
    return data[-limit:].decode(errors="replace").strip()


def oom_kills(memory_dir: str | None) -> int:
    """oom_kill from memory.events (v2) or memory.oom_control (v1); 0 if unknown."""
    if not memory_dir:
        return 0
    for name in ("memory.events", "memory.oom_control"):
        try:
            with open(os.path.join(memory_dir, name)) as f:
                for line in f:
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value)
        except OSError:
            continue
    return 0
