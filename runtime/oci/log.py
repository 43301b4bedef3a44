"""runc-style logging: --log FILE (default stderr), --log-format text|json, --debug.

containerd's go-runc reads the last `"level":"error"` line of the --log file to tell the
user why a call failed, so errors are always written there as well as to stderr."""

from __future__ import annotations

import os
import time

_path: str | None = None
_json_format = False
_debug = False


def configure(path: str | None, fmt: str, debug: bool) -> None:
    global _path, _json_format, _debug
    _path = path
    _json_format = fmt == "json"
    _debug = debug


def _stamp() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


def _write(level: str, msg: str) -> None:
    if _json_format:
        from . import _json
        line = _json.dumps({"level": level, "msg": msg, "time": _stamp()})
    else:
        line = f'time="{_stamp()}" level={level} msg="{_escape(msg)}"'
    data = (line + "\n").encode()
    if _path:
        try:
            fd = os.open(_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
            return
        except OSError:
            pass
    if level != "error":  # errors reach stderr from the CLI's own message
        os.write(2, data)


def _escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def error(msg: str) -> None:
    _write("error", msg)


def warn(msg: str) -> None:
    _write("warning", msg)


def debug(msg: str) -> None:
    if _debug:
        _write("debug", msg)
