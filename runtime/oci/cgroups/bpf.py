"""bpf(2) through ctypes: load a BPF_PROG_TYPE_CGROUP_DEVICE program and attach it to a
cgroup v2 directory, replacing the device filter attached before (devices.py builds it).

Kept apart from devices.py so that ctypes is imported only on v2 hosts with device rules.
"""

from __future__ import annotations

import ctypes
import os

from ..errors import SetupError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_NR_BPF = {"x86_64": 321, "aarch64": 280, "riscv64": 280, "ppc64le": 361, "ppc64": 361,
           "s390x": 351, "armv7l": 386, "i686": 357}
_PROG_LOAD, _PROG_ATTACH, _PROG_DETACH, _PROG_GET_FD_BY_ID, _PROG_QUERY = 5, 8, 9, 13, 16
_PROG_TYPE_CGROUP_DEVICE = 15
_CGROUP_DEVICE = 6  # attach type
_F_ALLOW_MULTI = 2

_u32, _u64 = ctypes.c_uint32, ctypes.c_uint64


class _LoadAttr(ctypes.Structure):
    _fields_ = [("prog_type", _u32), ("insn_cnt", _u32), ("insns", _u64), ("license", _u64),
                ("log_level", _u32), ("log_size", _u32), ("log_buf", _u64),
                ("kern_version", _u32), ("prog_flags", _u32), ("prog_name", ctypes.c_char * 16),
                ("prog_ifindex", _u32), ("expected_attach_type", _u32)]


class _AttachAttr(ctypes.Structure):
    _fields_ = [("target_fd", _u32), ("attach_bpf_fd", _u32), ("attach_type", _u32),
                ("attach_flags", _u32), ("replace_bpf_fd", _u32)]


class _QueryAttr(ctypes.Structure):
    _fields_ = [("target_fd", _u32), ("attach_type", _u32), ("query_flags", _u32),
                ("attach_flags", _u32), ("prog_ids", _u64), ("prog_cnt", _u32)]


class _GetFdAttr(ctypes.Structure):
    _fields_ = [("prog_id", _u32), ("next_id", _u32), ("open_flags", _u32)]


_libc: Any = None


def _bpf(cmd: int, attr: ctypes.Structure, what: str) -> int:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    nr = _NR_BPF.get(os.uname().machine)
    if nr is None:
        raise SetupError(f"bpf(2): unknown system call number on {os.uname().machine}")
    ret = int(_libc.syscall(ctypes.c_long(nr), ctypes.c_long(cmd), ctypes.byref(attr),
                           ctypes.c_long(ctypes.sizeof(attr))))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"bpf({what}): {os.strerror(err)}")
    return ret


def load(program: bytes) -> int:
    """BPF_PROG_LOAD the device filter; the verifier's log is in the error if it refuses."""
    insns = ctypes.create_string_buffer(program, len(program))
    license = ctypes.create_string_buffer(b"Apache")
    attr = _LoadAttr(prog_type=_PROG_TYPE_CGROUP_DEVICE, insn_cnt=len(program) // 8,
                     insns=ctypes.addressof(insns), license=ctypes.addressof(license),
                     prog_name=b"corral_devices")
    try:
        return _bpf(_PROG_LOAD, attr, "BPF_PROG_LOAD")
    except OSError as e:
        log = ctypes.create_string_buffer(65536)
        attr.log_level, attr.log_size, attr.log_buf = 1, len(log), ctypes.addressof(log)
        try:
            return _bpf(_PROG_LOAD, attr, "BPF_PROG_LOAD")
        except OSError:
            raise SetupError(f"loading the device filter: {e.strerror}: "
                             f"{log.value.decode(errors='replace').strip()}") from None


def attached(dir_fd: int) -> list[int]:
    """IDs of the device filters attached to the cgroup."""
    ids = (_u32 * 64)()
    attr = _QueryAttr(target_fd=dir_fd, attach_type=_CGROUP_DEVICE,
                      prog_ids=ctypes.addressof(ids), prog_cnt=len(ids))
    _bpf(_PROG_QUERY, attr, "BPF_PROG_QUERY")
    return list(ids[:attr.prog_cnt])


def attach_device_filter(path: str, program: bytes) -> None:
    """Attach `program` to cgroup `path`, then detach the filters it replaces.

    The new filter is attached before the old ones go (BPF_F_ALLOW_MULTI: all must allow),
    so there is no moment without a filter."""
    prog_fd = load(program)
    dir_fd = -1
    try:
        dir_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        old = attached(dir_fd)
        _bpf(_PROG_ATTACH, _AttachAttr(target_fd=dir_fd, attach_bpf_fd=prog_fd,
                                       attach_type=_CGROUP_DEVICE, attach_flags=_F_ALLOW_MULTI),
             "BPF_PROG_ATTACH")
        for prog_id in old:
            fd = _bpf(_PROG_GET_FD_BY_ID, _GetFdAttr(prog_id=prog_id), "BPF_PROG_GET_FD_BY_ID")
            try:
                _bpf(_PROG_DETACH, _AttachAttr(target_fd=dir_fd, attach_bpf_fd=fd,
                                               attach_type=_CGROUP_DEVICE), "BPF_PROG_DETACH")
            finally:
                os.close(fd)
    except OSError as e:
        raise SetupError(f"device filter on {path}: {e.strerror or e}") from None
    finally:
        os.close(prog_fd)
        if dir_fd >= 0:
            os.close(dir_fd)
