"""linux.seccomp compiled once per profile, kept as BPF under the runtime's root.

libseccomp turns Docker's default profile (~370 rules) into BPF in ~15 ms of CPU, which
was the biggest single cost of a container start. The program it makes depends only on
the profile, the architecture, libseccomp and the kernel (which flags it takes), so it is
compiled once and cached, keyed by all of them:

    create, exec (host side, before the fork)
      program(seccomp, cache_dir) ── key = sha256(the profile's JSON, machine,
         │                                        kernel release, libseccomp version,
         │                                        this format's version)
         ├─ <cache_dir>/<key>.bpf present and sound ─► Program(flags, code)
         └─ else seccomp.compile_bpf (libseccomp: the same rules seccomp_load would
            install, exported with seccomp_export_bpf) ─► written atomically (0600)
    init, exec's child (the container's side, as it drops privileges, as before)
      install(program)  ── seccomp(SECCOMP_SET_MODE_FILTER, flags, &{len, code}),
                           the call seccomp_load itself makes; no libseccomp needed

A file that is unreadable, foreign (another owner, writable by others), truncated or made
for another key is ignored and replaced. A cache that cannot be written costs only the
compile. seccomp.load() (compile and load in one) stays for callers without a root.
"""

from __future__ import annotations

import _sha256  # type: ignore[import-not-found]  # CPython builtin, no stub
import errno
import os

from . import _json, libc
from .errors import SetupError
from .linux import SYS, has_syscall

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

FORMAT = b"corral-seccomp-bpf 1\n"
DIGEST_SIZE = 32  # then the seccomp(2) flags, 4 bytes little-endian, then the program
_HEADER_SIZE = len(FORMAT) + DIGEST_SIZE + 4
INSN_SIZE = 8  # struct sock_filter
MAX_INSNS = 4096  # BPF_MAXINSNS: the kernel refuses longer programs
CACHE_DIR = "@seccomp"  # under --root; '@' is not allowed in a container ID
SECCOMP_FILTER_FLAG_TSYNC = 1


class Program:
    """A compiled filter: the seccomp(2) flags and the sock_filter array."""

    __slots__ = ("code", "flags")

    def __init__(self, flags: int, code: bytes) -> None:
        self.flags = flags
        self.code = code

    def __repr__(self) -> str:
        return f"Program(flags={self.flags:#x}, {len(self.code) // INSN_SIZE} insns)"


def key(seccomp: dict[str, Any], *, host: str) -> bytes:
    """The cache key of a validated LinuxSeccomp dict on HOST (see host_identity())."""
    h = _sha256.sha256(FORMAT)  # not hashlib: its OpenSSL import costs ~5 ms a start
    h.update(host.encode())
    h.update(b"\0")
    # The profile as written (order included: libseccomp's program follows the rule order)
    h.update(_json.dumps(seccomp).encode())
    digest: bytes = h.digest()
    return digest


_host: str | None = None
_VERSION = libc.array(libc.c_uint32, 3)  # struct scmp_version: major, minor, micro (uint)


def libseccomp_version() -> str:
    """libseccomp's version, e.g. "2.5.4", asked without seccomp.py's ctypes set-up (which
    costs ~1.5 ms in each fork that makes it; this, the dlopen alone: ~0.3 ms)."""
    try:
        lib = libc.Library("libseccomp.so.2")
    except OSError as e:
        raise SetupError(f"seccomp: cannot load libseccomp.so.2: {e}") from None
    address = lib.pointer_function("seccomp_version")()
    if not address:
        raise SetupError("seccomp: seccomp_version() returned NULL")
    v = _VERSION.from_address(address)
    return f"{v[0]}.{v[1]}.{v[2]}"


def host_identity() -> str:
    """What besides the profile decides the program: machine, kernel, libseccomp. Kept
    once known (a process that calls this before forking spares its children the dlopen)."""
    global _host
    if _host is None:
        uname = os.uname()
        # (libseccomp's API level follows from these two; probing it costs 9 syscalls)
        _host = f"{uname.machine} {uname.release} libseccomp {libseccomp_version()}"
    return _host


def encode(digest: bytes, prog: Program) -> bytes:
    return FORMAT + digest + prog.flags.to_bytes(4, "little") + prog.code


def decode(data: bytes, digest: bytes) -> Program | None:
    """The program in a cache file's DATA if it is sound and made for DIGEST, else None."""
    if len(data) <= _HEADER_SIZE or not data.startswith(FORMAT):
        return None
    got = data[len(FORMAT):len(FORMAT) + DIGEST_SIZE]
    flags = int.from_bytes(data[_HEADER_SIZE - 4:_HEADER_SIZE], "little")
    code = data[_HEADER_SIZE:]
    if got != digest or len(code) % INSN_SIZE or len(code) // INSN_SIZE > MAX_INSNS:
        return None
    return Program(flags, code)


def _read(path: str, digest: bytes) -> Program | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if st.st_uid != os.geteuid() or st.st_mode & 0o022:
            return None  # not ours alone: never load a filter someone else could write
        data = os.read(fd, st.st_size + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    return decode(data, digest)


def _write(cache_dir: str, path: str, data: bytes) -> None:
    """Atomically, or not at all (a cache we cannot write only costs the compile)."""
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(cache_dir, mode=0o700, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def program(seccomp: dict[str, Any], cache_dir: str) -> Program:
    """The compiled filter for a validated LinuxSeccomp dict, from CACHE_DIR or made now
    (and kept there). Raises SetupError as seccomp.load() would for what libseccomp or
    this kernel refuses. A cache hit imports neither seccomp.py nor ctypes (~3.5 ms of an
    exec'd corral-runc create)."""
    digest = key(seccomp, host=host_identity())
    path = os.path.join(cache_dir, digest.hex() + ".bpf")
    prog = _read(path, digest)
    if prog is None:
        from . import seccomp as sc
        flags, code = sc.compile_bpf(seccomp)
        prog = Program(flags, code)
        _write(cache_dir, path, encode(digest, prog))
    return prog


def for_root(seccomp: dict[str, Any], root: str) -> Program | None:
    """program() with the cache of the runtime's --root ROOT; None on a machine whose
    seccomp(2) number we do not know (libseccomp then compiles and loads in the init)."""
    if not has_syscall("seccomp"):
        return None
    return program(seccomp, os.path.join(root, CACHE_DIR))


def install(prog: Program) -> None:
    """Load PROG into the calling process as seccomp_load does (no_new_privs set, or
    CAP_SYS_ADMIN held)."""
    from . import seccomp as sc
    try:
        ret = SYS.seccomp_filter(prog.flags, prog.code)
    except OSError as e:
        raise SetupError(f"seccomp: {sc.load_error(e.errno or 0)}") from None
    if ret > 0 and prog.flags & SECCOMP_FILTER_FLAG_TSYNC:
        # another thread could not be synchronised (libseccomp's -ESRCH)
        raise SetupError(f"seccomp: {sc.load_error(errno.ESRCH)}")
