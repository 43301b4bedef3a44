"""linux.seccomp: check an OCI LinuxSeccomp object, compile it with libseccomp, load it.

    validate(seccomp)      pure: every field that libseccomp would reject, named as a JSON path
         |
    plan(seccomp) -> Plan  pure: actions as libseccomp integers, runc's rule semantics
         |                   (multiple comparisons on one argument become separate rules,
         |                    rules equal to the default action are dropped)
    load(seccomp)          thin executor: seccomp_init, arch_add, attr_set, rule_add_array,
                           seccomp_load on the calling process (libseccomp.so.2 via ctypes)
    compile_bpf(seccomp)   the same filter exported (seccomp_export_bpf) with the seccomp(2)
                           flags seccomp_load would pass, for seccomp_bpf.py to cache and load

Syscall names libseccomp does not know are skipped, as runc and Docker do: profiles list
syscalls of every architecture and kernel generation. libseccomp is loaded on first use,
and `ctypes` with it (its import costs ~3.5 ms): validate() and plan(), which every create
runs, and the structures below need only libc.py's `_ctypes` types. `features()` is the
"seccomp" object of the OCI features document. The default profile lives in
seccomp_profile (imported on demand).
"""

from __future__ import annotations

import errno
import os

from runtime.oci import libc
from runtime.oci.errors import ConfigError, SetupError, Unsupported

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TypeGuard

# libseccomp action values (seccomp.h); ERRNO and TRACE carry 16 bits of data.
ACT_KILL_THREAD = 0x00000000
ACT_KILL_PROCESS = 0x80000000
ACT_TRAP = 0x00030000
ACT_ERRNO = 0x00050000
ACT_TRACE = 0x7FF00000
ACT_LOG = 0x7FFC0000
ACT_ALLOW = 0x7FFF0000

_ACTIONS = {
    "SCMP_ACT_KILL": ACT_KILL_THREAD,
    "SCMP_ACT_KILL_THREAD": ACT_KILL_THREAD,
    "SCMP_ACT_KILL_PROCESS": ACT_KILL_PROCESS,
    "SCMP_ACT_TRAP": ACT_TRAP,
    "SCMP_ACT_ERRNO": ACT_ERRNO,
    "SCMP_ACT_TRACE": ACT_TRACE,
    "SCMP_ACT_ALLOW": ACT_ALLOW,
    "SCMP_ACT_LOG": ACT_LOG,
}
_WITH_ERRNO = ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE")
# libseccomp API level (seccomp_api_get) an action needs; 1 = any libseccomp.
_ACTION_API = {"SCMP_ACT_KILL_PROCESS": 3, "SCMP_ACT_LOG": 3}

# enum scmp_compare
_OPERATORS = {
    "SCMP_CMP_NE": 1,
    "SCMP_CMP_LT": 2,
    "SCMP_CMP_LE": 3,
    "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5,
    "SCMP_CMP_GT": 6,
    "SCMP_CMP_MASKED_EQ": 7,
}
MAX_ARGS = 6

# enum scmp_filter_attr
_ATTR_CTL_NNP = 3
_ATTR_CTL_TSYNC = 4
_ATTR_CTL_LOG = 6
_ATTR_CTL_SSB = 7
_ATTR_API_SYSRAWRC = 9
_ATTR_CTL_WAITKILL = 10
_FLAGS = {
    "SECCOMP_FILTER_FLAG_TSYNC": _ATTR_CTL_TSYNC,
    "SECCOMP_FILTER_FLAG_LOG": _ATTR_CTL_LOG,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": _ATTR_CTL_SSB,
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": _ATTR_CTL_WAITKILL,
}
# The seccomp(2) flag each attribute turns on when libseccomp loads a filter (<linux/seccomp.h>)
_KERNEL_FLAGS = {_ATTR_CTL_TSYNC: 1, _ATTR_CTL_LOG: 2, _ATTR_CTL_SSB: 4, _ATTR_CTL_WAITKILL: 32}

# OCI architecture names; libseccomp's token is the suffix in lower case ("SCMP_ARCH_X86_64"
# -> "x86_64"). The set is libseccomp's; whether this host's libseccomp knows one is features().
ARCHES = (
    "SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32", "SCMP_ARCH_ARM", "SCMP_ARCH_AARCH64",
    "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS64N32", "SCMP_ARCH_MIPSEL",
    "SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_PPC", "SCMP_ARCH_PPC64",
    "SCMP_ARCH_PPC64LE", "SCMP_ARCH_S390", "SCMP_ARCH_S390X", "SCMP_ARCH_PARISC",
    "SCMP_ARCH_PARISC64", "SCMP_ARCH_RISCV64", "SCMP_ARCH_LOONGARCH64", "SCMP_ARCH_M68K",
    "SCMP_ARCH_SH", "SCMP_ARCH_SHEB",
)
_ARCH_PREFIX = "SCMP_ARCH_"
MAX_ERRNO = 4095  # the kernel clamps SECCOMP_RET_ERRNO data to this


def _arch_token(name: str) -> str:
    return name[len(_ARCH_PREFIX):].lower()


# ---------------------------------------------------------------------------------------------
# validate: pure


def _is_int(v: object) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_action(action: object, errno_ret: object, *, field: str, errno_field: str) -> None:
    if action == "SCMP_ACT_NOTIFY":
        raise Unsupported(field, "SCMP_ACT_NOTIFY needs a seccomp listener (listenerPath), "
                                 "which this runtime does not support")
    if not isinstance(action, str) or action not in _ACTIONS:
        raise ConfigError(field, f"unknown action {action!r}; expected one of "
                                 f"{', '.join(_ACTIONS)}")
    if errno_ret is None:
        return
    if action not in _WITH_ERRNO:
        raise ConfigError(errno_field, f"{action} does not return an errno; only "
                                       "SCMP_ACT_ERRNO and SCMP_ACT_TRACE take one")
    if not _is_int(errno_ret) or not 0 <= errno_ret <= MAX_ERRNO:
        raise ConfigError(errno_field, f"must be an errno number from 0 to {MAX_ERRNO}, "
                                       f"got {errno_ret!r}")


def _check_arg(arg: object, field: str) -> None:
    if not isinstance(arg, dict):
        raise ConfigError(field, f"must be an object, got {type(arg).__name__}")
    index = arg.get("index")
    if not _is_int(index) or not 0 <= index < MAX_ARGS:
        raise ConfigError(f"{field}.index",
                          f"must be a syscall argument index from 0 to {MAX_ARGS - 1}, "
                          f"got {index!r}")
    op = arg.get("op")
    if not isinstance(op, str) or op not in _OPERATORS:
        raise ConfigError(f"{field}.op", f"unknown operator {op!r}; expected one of "
                                         f"{', '.join(_OPERATORS)}")
    for key in ("value", "valueTwo"):
        v = arg.get(key, 0)
        if not _is_int(v) or not 0 <= v < 1 << 64:
            raise ConfigError(f"{field}.{key}", f"must be an unsigned 64-bit integer, got {v!r}")


def _check_list(value: object, field: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(field, f"must be an array, got {type(value).__name__}")
    return value


def validate(seccomp: dict[str, Any], field: str = "linux.seccomp") -> None:
    """Raise ConfigError (or Unsupported) naming the first field libseccomp cannot take."""
    if not isinstance(seccomp, dict):
        raise ConfigError(field, f"must be an object, got {type(seccomp).__name__}")
    for key in ("listenerPath", "listenerMetadata"):
        if seccomp.get(key):
            raise Unsupported(f"{field}.{key}",
                              "seccomp user notification (SCMP_ACT_NOTIFY) is not supported")
    if "defaultAction" not in seccomp:
        raise ConfigError(f"{field}.defaultAction", "is required")
    _check_action(seccomp["defaultAction"], seccomp.get("defaultErrnoRet"),
                  field=f"{field}.defaultAction", errno_field=f"{field}.defaultErrnoRet")
    for i, arch in enumerate(_check_list(seccomp.get("architectures"), f"{field}.architectures")):
        if not isinstance(arch, str) or arch not in ARCHES:
            raise ConfigError(f"{field}.architectures[{i}]", f"unknown architecture {arch!r}")
    for i, flag in enumerate(_check_list(seccomp.get("flags"), f"{field}.flags")):
        if not isinstance(flag, str) or flag not in _FLAGS:
            raise ConfigError(f"{field}.flags[{i}]", f"unknown flag {flag!r}; expected one of "
                                                     f"{', '.join(_FLAGS)}")
    for i, rule in enumerate(_check_list(seccomp.get("syscalls"), f"{field}.syscalls")):
        where = f"{field}.syscalls[{i}]"
        if not isinstance(rule, dict):
            raise ConfigError(where, f"must be an object, got {type(rule).__name__}")
        names = rule.get("names")
        if not isinstance(names, list) or not names:
            raise ConfigError(f"{where}.names", "must list at least one syscall name")
        for j, name in enumerate(names):
            if not isinstance(name, str) or not name:
                raise ConfigError(f"{where}.names[{j}]", f"must be a syscall name, got {name!r}")
        if "action" not in rule:
            raise ConfigError(f"{where}.action", "is required")
        _check_action(rule["action"], rule.get("errnoRet"),
                      field=f"{where}.action", errno_field=f"{where}.errnoRet")
        for j, arg in enumerate(_check_list(rule.get("args"), f"{where}.args")):
            _check_arg(arg, f"{where}.args[{j}]")


# ---------------------------------------------------------------------------------------------
# plan: pure compilation into libseccomp terms

Condition = tuple[int, int, int, int]  # (arg index, scmp_compare, datum_a, datum_b)


class Rule:
    __slots__ = ("action", "conditions", "name")

    def __init__(self, name: str, action: int, conditions: tuple[Condition, ...]) -> None:
        self.name = name
        self.action = action
        self.conditions = conditions

    def __repr__(self) -> str:
        return f"Rule({self.name!r}, {self.action:#x}, {self.conditions!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Rule) and (self.name, self.action, self.conditions) == (
            other.name, other.action, other.conditions)

    def __hash__(self) -> int:
        return hash((self.name, self.action, self.conditions))


class Plan:
    """What load() hands to libseccomp, decided without touching it."""

    __slots__ = ("arches", "default_action", "flags", "rules")

    def __init__(self, default_action: int, arches: list[str], flags: list[str],
                 rules: list[Rule]) -> None:
        self.default_action = default_action
        self.arches = arches  # libseccomp tokens, e.g. "x86_64"
        self.flags = flags  # OCI flag names
        self.rules = rules


def action_value(action: str, errno_ret: int | None = None) -> int:
    """The libseccomp action for an OCI action name; ERRNO/TRACE default to EPERM (as runc)."""
    value = _ACTIONS[action]
    if action in _WITH_ERRNO:
        value |= (errno.EPERM if errno_ret is None else errno_ret) & 0xFFFF
    return value


def _conditions(args: list[dict[str, Any]]) -> list[tuple[Condition, ...]]:
    """The condition sets of one OCI rule; each set becomes one libseccomp rule.

    libseccomp refuses two comparisons on the same argument in one rule (EINVAL). runc then
    adds every comparison as a rule of its own, so they OR; that is what OCI configs written
    for runc (Docker's included) expect, so do the same.
    """
    conds = [(a["index"], _OPERATORS[a["op"]], a.get("value", 0), a.get("valueTwo", 0))
             for a in args]
    indexes = [c[0] for c in conds]
    if len(set(indexes)) < len(indexes):
        return [(c,) for c in conds]
    return [tuple(conds)]


def plan(seccomp: dict[str, Any]) -> Plan:
    """Compile a validated LinuxSeccomp dict into libseccomp actions, arches and rules."""
    default = action_value(seccomp["defaultAction"], seccomp.get("defaultErrnoRet"))
    arches: list[str] = []
    for arch in seccomp.get("architectures") or ():
        token = _arch_token(arch)
        if token not in arches:
            arches.append(token)
    flags = list(dict.fromkeys(seccomp.get("flags") or ()))
    rules: list[Rule] = []
    seen: set[Rule] = set()
    for rule in seccomp.get("syscalls") or ():
        action = action_value(rule["action"], rule.get("errnoRet"))
        if action == default:
            continue  # libseccomp refuses these (EACCES); runc skips them too
        for conds in _conditions(rule.get("args") or []):
            for name in rule["names"]:
                r = Rule(name, action, conds)
                if r not in seen:
                    seen.add(r)
                    rules.append(r)
    return Plan(default, arches, flags, rules)


# ---------------------------------------------------------------------------------------------
# libseccomp (ctypes), loaded on first use; the structures are built on libc.py's types
# (a C unsigned int is 32 bits on every architecture Linux runs on)


class _ArgCmp(libc.Structure):  # struct scmp_arg_cmp
    _fields_ = [
        ("arg", libc.c_uint32),
        ("op", libc.c_int),
        ("datum_a", libc.c_uint64),
        ("datum_b", libc.c_uint64),
    ]


class _Version(libc.Structure):  # struct scmp_version
    _fields_ = [("major", libc.c_uint32), ("minor", libc.c_uint32), ("micro", libc.c_uint32)]


_NR_SCMP_ERROR = -1
_libseccomp: Any = None


def _lib() -> Any:
    global _libseccomp
    if _libseccomp is None:
        import ctypes

        try:
            lib = ctypes.CDLL("libseccomp.so.2")
        except OSError as e:
            raise SetupError(f"seccomp: cannot load libseccomp.so.2: {e}") from None
        ctx, u32, cstr = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_char_p
        for fn, restype, argtypes in (
            ("seccomp_init", ctx, [u32]),
            ("seccomp_release", None, [ctx]),
            ("seccomp_arch_add", ctypes.c_int, [ctx, u32]),
            ("seccomp_arch_native", u32, []),
            ("seccomp_arch_resolve_name", u32, [cstr]),
            ("seccomp_syscall_resolve_name", ctypes.c_int, [cstr]),
            ("seccomp_rule_add_array", ctypes.c_int,
             [ctx, u32, ctypes.c_int, ctypes.c_uint, ctypes.POINTER(_ArgCmp)]),
            ("seccomp_attr_set", ctypes.c_int, [ctx, ctypes.c_int, u32]),
            ("seccomp_load", ctypes.c_int, [ctx]),
            ("seccomp_attr_get", ctypes.c_int,
             [ctx, ctypes.c_int, ctypes.POINTER(libc.c_uint32)]),
            ("seccomp_export_bpf", ctypes.c_int, [ctx, ctypes.c_int]),
            ("seccomp_api_get", ctypes.c_uint, []),
            ("seccomp_version", ctypes.POINTER(_Version), []),
        ):
            f = getattr(lib, fn)
            f.restype = restype
            f.argtypes = argtypes
        _libseccomp = lib
    return _libseccomp


def version() -> str:
    """libseccomp's version, e.g. "2.5.4"."""
    v = _lib().seccomp_version().contents
    return f"{v.major}.{v.minor}.{v.micro}"


def syscall_number(name: str) -> int | None:
    """The native number libseccomp gives a syscall name (negative for a syscall of another
    architecture only), or None if libseccomp does not know the name."""
    nr: int = _lib().seccomp_syscall_resolve_name(name.encode())
    return None if nr == _NR_SCMP_ERROR else nr


def _strerror(rc: int) -> str:
    return os.strerror(-rc) if rc < 0 else f"error {rc}"


def _build(p: Plan, lib: Any) -> Any:
    """A libseccomp filter context holding plan P (the caller releases it)."""
    ctx = lib.seccomp_init(p.default_action)
    if not ctx:
        raise SetupError(f"seccomp: seccomp_init failed for default action {p.default_action:#x}")
    try:
        # The caller applies process.noNewPrivileges itself; libseccomp must not force it.
        rc = lib.seccomp_attr_set(ctx, _ATTR_CTL_NNP, 0)
        if rc < 0:
            raise SetupError(f"seccomp: cannot clear the no_new_privs attribute: {_strerror(rc)}")
        lib.seccomp_attr_set(ctx, _ATTR_API_SYSRAWRC, 1)  # raw errnos; older libseccomp: ignore
        # Like runc, synchronise all threads when the kernel can (a no-op in a single thread).
        lib.seccomp_attr_set(ctx, _ATTR_CTL_TSYNC, 1)
        for token in p.arches:
            arch = lib.seccomp_arch_resolve_name(token.encode())
            if not arch:
                raise SetupError(f"seccomp: architecture SCMP_ARCH_{token.upper()} is not known "
                                 f"to libseccomp {version()}")
            rc = lib.seccomp_arch_add(ctx, arch)
            if rc < 0 and rc != -errno.EEXIST:  # the native arch is already in the filter
                raise SetupError(f"seccomp: adding architecture SCMP_ARCH_{token.upper()}: "
                                 f"{_strerror(rc)}")
        for flag in p.flags:
            rc = lib.seccomp_attr_set(ctx, _FLAGS[flag], 1)
            if rc < 0:
                raise SetupError(f"seccomp: flag {flag} is not supported by libseccomp "
                                 f"{version()} or this kernel: {_strerror(rc)}")
        for r in p.rules:
            nr = lib.seccomp_syscall_resolve_name(r.name.encode())
            if nr == _NR_SCMP_ERROR:
                continue  # unknown to libseccomp: skipped, as runc does
            conds = (_ArgCmp * len(r.conditions))(*(_ArgCmp(*c) for c in r.conditions))
            rc = lib.seccomp_rule_add_array(ctx, r.action, nr, len(r.conditions), conds)
            if rc < 0:
                raise SetupError(f"seccomp: adding the rule for syscall {r.name} "
                                 f"(action {r.action:#x}, conditions {list(r.conditions)}): "
                                 f"{_strerror(rc)}")
    except BaseException:
        lib.seccomp_release(ctx)
        raise
    return ctx


def _install(p: Plan, lib: Any) -> None:
    ctx = _build(p, lib)
    try:
        rc = lib.seccomp_load(ctx)
        if rc < 0:
            raise SetupError(f"seccomp: {load_error(-rc)}")
    finally:
        lib.seccomp_release(ctx)


def load_error(err: int) -> str:
    """What loading a filter failed with, for errno ERR (libseccomp's or the kernel's)."""
    hint = " (set no_new_privs or hold CAP_SYS_ADMIN first)" if err == errno.EACCES else ""
    return f"loading the filter: {os.strerror(err)}{hint}"


def _export(p: Plan, lib: Any) -> tuple[int, bytes]:
    """The kernel flags and the BPF program seccomp_load would give the kernel for P."""
    ctx = _build(p, lib)
    try:
        flags = 0
        value = libc.c_uint32(0)
        for attr, flag in _KERNEL_FLAGS.items():
            if lib.seccomp_attr_get(ctx, attr, libc.byref(value)) == 0 and value.value:
                flags |= flag
        fd = os.memfd_create("corral-seccomp", os.MFD_CLOEXEC)
        try:
            rc = lib.seccomp_export_bpf(ctx, fd)
            if rc < 0:
                raise SetupError(f"seccomp: exporting the filter: {_strerror(rc)}")
            size = os.fstat(fd).st_size
            code = os.pread(fd, size, 0)
        finally:
            os.close(fd)
    finally:
        lib.seccomp_release(ctx)
    return flags, code


def compile_bpf(seccomp: dict[str, Any]) -> tuple[int, bytes]:
    """Compile a validated OCI LinuxSeccomp dict with libseccomp, without loading it: the
    seccomp(2) flags and the BPF program (struct sock_filter array) seccomp_load would use
    on this host (seccomp_bpf.py caches them)."""
    return _export(plan(seccomp), _lib())


def load(seccomp: dict[str, Any]) -> None:
    """Compile an OCI LinuxSeccomp dict and load it into the calling process.

    Raises ConfigError for an invalid object and SetupError when libseccomp or the kernel
    refuses. The caller has set no_new_privs or holds CAP_SYS_ADMIN.
    """
    validate(seccomp)
    _install(plan(seccomp), _lib())


def preload() -> None:
    """Load libseccomp now, while the host's filesystem is reachable: the runtime calls
    this before pivot_root (or setns into a container), and load() after it."""
    _lib()


def default_profile(capabilities: list[str] | None = None) -> dict[str, Any]:
    """Docker's default profile for a container with these capabilities (None: Docker's
    default set), as an OCI LinuxSeccomp dict for this host's architecture and kernel."""
    from runtime.oci import seccomp_profile

    return seccomp_profile.build(capabilities)


# ---------------------------------------------------------------------------------------------
# features


def _supported_flags(lib: Any) -> list[str]:
    ctx = lib.seccomp_init(ACT_ALLOW)
    if not ctx:
        return []
    try:
        # libseccomp checks the kernel (a seccomp() probe with a NULL filter) for each flag.
        return [f for f, attr in _FLAGS.items() if lib.seccomp_attr_set(ctx, attr, 1) == 0]
    finally:
        lib.seccomp_release(ctx)


def features() -> dict[str, Any]:
    """The "seccomp" object of the OCI features document for this host."""
    try:
        lib = _lib()
    except SetupError:
        return {"enabled": False}
    api = lib.seccomp_api_get()
    return {
        "enabled": True,
        "actions": [a for a in _ACTIONS if api >= _ACTION_API.get(a, 1)],
        "operators": list(_OPERATORS),
        "archs": [a for a in ARCHES if lib.seccomp_arch_resolve_name(_arch_token(a).encode())],
        "knownFlags": list(_FLAGS),
        "supportedFlags": _supported_flags(lib),
    }
