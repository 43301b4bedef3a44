"""The cgroup filesystem: every control-file read and write of this package goes through here.

`CgroupFiles` is the real filesystem; `RecordingFiles` also logs each write, so unit tests
on fake trees can assert the order of writes. `Controller` is the base of the per-controller
classes in v1.py / v2.py: it turns a kernel refusal into an error that names the config field.
"""

from __future__ import annotations

import errno
import os

from ..errors import ConfigError, OCIError, SetupError, Unsupported

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_O_WRITE = os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC
_O_READ = os.O_RDONLY | os.O_CLOEXEC

# errnos by which the kernel refuses a value: the value is wrong, not the machine.
_REFUSED = frozenset({errno.EINVAL, errno.EBUSY, errno.ERANGE, errno.EOVERFLOW,
                      errno.ENOSPC, errno.EPERM, errno.EOPNOTSUPP})


class CgroupFiles:
    """Reads and writes cgroup control files with one open/read-or-write/close each."""

    def write(self, path: str, value: str) -> None:
        fd = os.open(path, _O_WRITE)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)

    def read(self, path: str) -> str:
        fd = os.open(path, _O_READ)
        try:
            chunks = []
            while True:
                b = os.read(fd, 65536)
                if not b:
                    break
                chunks.append(b)
        finally:
            os.close(fd)
        return b"".join(chunks).decode()


    def mkdir(self, path: str) -> None:
        """Create the cgroup `path` and any missing parents; an existing one is fine."""
        try:
            os.mkdir(path, 0o755)
        except FileExistsError:
            pass
        except FileNotFoundError:
            os.makedirs(path, 0o755, exist_ok=True)

    def rmdir(self, path: str) -> None:
        os.rmdir(path)

    def subdirs(self, path: str) -> list[str]:
        """Child cgroups of `path`, deepest first (the order to remove them in)."""
        out = []
        for dirpath, _, _ in os.walk(path, topdown=False):
            if dirpath != path:
                out.append(dirpath)
        return out


class RecordingFiles(CgroupFiles):
    """Writes like CgroupFiles and records (path, value) for every attempted write."""

    def __init__(self) -> None:
        self.writes: list[tuple[str, str]] = []

    def write(self, path: str, value: str) -> None:
        self.writes.append((path, value))
        super().write(path, value)


FILES = CgroupFiles()


def write_error(e: OSError, *, field: str, path: str, value: str) -> OCIError:
    """The error to report when the kernel refuses `value` in control file `path`."""
    directory, name = os.path.split(path)
    why = os.strerror(e.errno) if e.errno else str(e)
    if e.errno == errno.ENOENT:
        if not os.path.isdir(directory):
            return SetupError(f"cgroup {directory} does not exist ({field})")
        return Unsupported(field, f"{name} does not exist in {directory}: the controller is "
                                  "not available or not enabled for this cgroup")
    if e.errno in _REFUSED:
        return ConfigError(field, f"the kernel refused {value!r} in {name}: {why}")
    return SetupError(f"{field}: writing {value!r} to {path}: {why}")


class Controller:
    """One cgroup controller: writes the part of linux.resources that it owns.

    `name` is the controller whose hierarchy (v1) holds the files; `section` the key of
    linux.resources it reads; `keys` the settings in that section it writes (used to say
    which field cannot be honoured when the controller is absent).
    """

    name = ""
    section = ""
    keys: tuple[str, ...] = ()
    absent = "the {name} cgroup controller is not available on this host"

    def __init__(self, files: CgroupFiles = FILES, field: str = "linux.resources") -> None:
        self.files = files
        self.field = field

    def apply(self, resources: dict[str, Any], path: str) -> None:
        raise NotImplementedError

    def field_of(self, key: str) -> str:
        return f"{self.field}.{self.section}.{key}" if key else f"{self.field}.{self.section}"

    def put(self, path: str, name: str, value: str, key: str, *,
            missing_ok: bool = False, defer: bool = False) -> bool:
        """Write `value` to `path`/`name`; `key` names the setting in error messages.

        Returns False instead of raising when the file is missing and `missing_ok` (a kernel
        without that knob, for a value that only restates the default), or when the kernel
        says EINVAL and `defer` (the value conflicts with one still to be written, as a
        period before its quota: the caller writes it again afterwards)."""
        full = f"{path}/{name}"
        try:
            self.files.write(full, value)
        except OSError as e:
            if (missing_ok and e.errno == errno.ENOENT) or (defer and e.errno == errno.EINVAL):
                return False
            raise write_error(e, field=self.field_of(key), path=full, value=value) from None
        return True

    def get(self, path: str, name: str) -> str:
        full = f"{path}/{name}"
        try:
            return self.files.read(full).strip()
        except OSError as e:
            raise SetupError(f"reading {full}: {os.strerror(e.errno or 0)}") from None

    def section_of(self, resources: dict[str, Any]) -> dict[str, Any]:
        s = resources.get(self.section)
        return s if isinstance(s, dict) else {}


def requested(value: Any) -> bool:
    """Does a setting ask for something? 0, -1/negative ("unlimited"), false, "" and empty
    lists only restate the kernel's defaults, so they are harmless without the controller."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value > 0
    return bool(value)
