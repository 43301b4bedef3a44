"""runtime.oci.seccomp and seccomp_profile without loading a filter (no root needed)."""

from __future__ import annotations

import ctypes
import errno
import os
import subprocess
import sys
from typing import Any

import pytest

from runtime.oci import seccomp, seccomp_profile
from runtime.oci.errors import ConfigError, SetupError, Unsupported

ALLOW = "SCMP_ACT_ALLOW"
ERRNO = "SCMP_ACT_ERRNO"
MAIN = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__))))))


def cfg(**kw: object) -> dict[str, object]:
    return {"defaultAction": ALLOW, **kw}


def rule(names: list[str], action: str = ERRNO, **kw: object) -> dict[str, object]:
    return {"names": names, "action": action, **kw}


def arg(index: int, op: str, value: int, value_two: int | None = None) -> dict[str, object]:
    a: dict[str, object] = {"index": index, "op": op, "value": value}
    if value_two is not None:
        a["valueTwo"] = value_two
    return a


# ---------------------------------------------------------------------------------------------
# validate


@pytest.mark.parametrize("config", [
    pytest.param(cfg(), id="minimal"),
    *(pytest.param(cfg(syscalls=[rule(["getpid"], action=a)]), id=a)
      for a in ("SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD",
                "SCMP_ACT_TRAP", "SCMP_ACT_TRACE", "SCMP_ACT_LOG", ALLOW)),
    pytest.param({"defaultAction": ERRNO, "defaultErrnoRet": 38}, id="default-errno-ret"),
    pytest.param({"defaultAction": "SCMP_ACT_TRACE", "defaultErrnoRet": 1}, id="trace-errno"),
    pytest.param(cfg(syscalls=[rule(["mkdir"], errnoRet=0)]), id="errno-zero"),
    pytest.param(cfg(syscalls=[rule(["no_such_syscall_xyz"])]), id="unknown-name-is-fine"),
    pytest.param(cfg(architectures=["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
                     flags=["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"]),
                 id="arches-and-flags"),
    pytest.param(cfg(syscalls=[rule(["socket"], args=[
        arg(0, "SCMP_CMP_EQ", 1), arg(1, "SCMP_CMP_MASKED_EQ", 0xF, 2),
        arg(5, "SCMP_CMP_GE", 2**64 - 1)])]), id="args"),
])
def test_validate_accepts(config: dict[str, object]) -> None:
    seccomp.validate(config)


@pytest.mark.parametrize("config, error, field", [
    pytest.param({}, ConfigError, "linux.seccomp.defaultAction", id="no-default-action"),
    pytest.param({"defaultAction": "SCMP_ACT_NOPE"}, ConfigError, "linux.seccomp.defaultAction",
                 id="unknown-default-action"),
    pytest.param({"defaultAction": "SCMP_ACT_NOTIFY"}, Unsupported,
                 "linux.seccomp.defaultAction", id="notify-default"),
    pytest.param(cfg(syscalls=[rule(["a"]), rule(["b"], action="SCMP_ACT_NOTIFY")]),
                 Unsupported, "linux.seccomp.syscalls[1].action", id="notify-rule"),
    pytest.param(cfg(listenerPath="/run/l.sock"), Unsupported, "linux.seccomp.listenerPath",
                 id="listener-path"),
    pytest.param(cfg(listenerMetadata="x"), Unsupported, "linux.seccomp.listenerMetadata",
                 id="listener-metadata"),
    pytest.param(cfg(syscalls=[rule(["a"], action="SCMP_ACT_BOGUS")]), ConfigError,
                 "linux.seccomp.syscalls[0].action", id="unknown-action"),
    pytest.param(cfg(syscalls=[{"names": ["a"]}]), ConfigError,
                 "linux.seccomp.syscalls[0].action", id="missing-action"),
    pytest.param(cfg(architectures=["SCMP_ARCH_X86_64", "SCMP_ARCH_VAX"]), ConfigError,
                 "linux.seccomp.architectures[1]", id="unknown-arch"),
    pytest.param(cfg(flags=["SECCOMP_FILTER_FLAG_NEW_LISTENER"]), ConfigError,
                 "linux.seccomp.flags[0]", id="unknown-flag"),
    pytest.param(cfg(syscalls=[rule([])]), ConfigError, "linux.seccomp.syscalls[0].names",
                 id="empty-names"),
    pytest.param(cfg(syscalls=[{"action": ALLOW}]), ConfigError,
                 "linux.seccomp.syscalls[0].names", id="missing-names"),
    pytest.param(cfg(syscalls=[rule(["a", ""])]), ConfigError,
                 "linux.seccomp.syscalls[0].names[1]", id="empty-name"),
    pytest.param(cfg(syscalls=[rule(["a"], args=[arg(6, "SCMP_CMP_EQ", 1)])]), ConfigError,
                 "linux.seccomp.syscalls[0].args[0].index", id="arg-index-6"),
    pytest.param(cfg(syscalls=[rule(["a"], args=[arg(-1, "SCMP_CMP_EQ", 1)])]), ConfigError,
                 "linux.seccomp.syscalls[0].args[0].index", id="arg-index-negative"),
    pytest.param(cfg(syscalls=[rule(["a"], args=[arg(0, "SCMP_CMP_EQ", 1),
                                                 arg(1, "SCMP_CMP_SORTA", 1)])]),
                 ConfigError, "linux.seccomp.syscalls[0].args[1].op", id="unknown-op"),
    pytest.param(cfg(syscalls=[rule(["a"], args=[arg(0, "SCMP_CMP_EQ", -1)])]), ConfigError,
                 "linux.seccomp.syscalls[0].args[0].value", id="negative-value"),
    pytest.param(cfg(syscalls=[rule(["a"], args=[arg(0, "SCMP_CMP_EQ", 1, 2**64)])]),
                 ConfigError, "linux.seccomp.syscalls[0].args[0].valueTwo", id="value-two-big"),
    pytest.param(cfg(syscalls=[rule(["a"], action=ALLOW, errnoRet=1)]), ConfigError,
                 "linux.seccomp.syscalls[0].errnoRet", id="errno-ret-on-allow"),
    pytest.param(cfg(syscalls=[rule(["a"], errnoRet=5000)]), ConfigError,
                 "linux.seccomp.syscalls[0].errnoRet", id="errno-ret-too-big"),
    pytest.param({"defaultAction": ALLOW, "defaultErrnoRet": 1}, ConfigError,
                 "linux.seccomp.defaultErrnoRet", id="default-errno-ret-on-allow"),
    # JSON of the wrong type must give a ConfigError, not a crash
    pytest.param([], ConfigError, "linux.seccomp", id="not-an-object"),
    pytest.param(cfg(syscalls={"names": ["a"]}), ConfigError, "linux.seccomp.syscalls",
                 id="syscalls-not-list"),
    pytest.param(cfg(syscalls=["mkdir"]), ConfigError, "linux.seccomp.syscalls[0]",
                 id="rule-not-object"),
    pytest.param(cfg(syscalls=[{"names": "mkdir", "action": ERRNO}]), ConfigError,
                 "linux.seccomp.syscalls[0].names", id="names-not-list"),
    pytest.param(cfg(syscalls=[{"names": [7], "action": ERRNO}]), ConfigError,
                 "linux.seccomp.syscalls[0].names[0]", id="name-not-string"),
    pytest.param(cfg(syscalls=[rule(["a"], args=[1])]), ConfigError,
                 "linux.seccomp.syscalls[0].args[0]", id="arg-not-object"),
    pytest.param(cfg(syscalls=[rule(["a"], args=[arg(True, "SCMP_CMP_EQ", 1)])]), ConfigError,
                 "linux.seccomp.syscalls[0].args[0].index", id="index-bool"),
    pytest.param(cfg(syscalls=[rule(["a"], errnoRet="EPERM")]), ConfigError,
                 "linux.seccomp.syscalls[0].errnoRet", id="errno-ret-string"),
    pytest.param(cfg(architectures="SCMP_ARCH_X86_64"), ConfigError,
                 "linux.seccomp.architectures", id="architectures-not-list"),
    pytest.param(cfg(flags=[["SECCOMP_FILTER_FLAG_LOG"]]), ConfigError, "linux.seccomp.flags[0]",
                 id="flag-unhashable"),
    pytest.param(cfg(architectures=[{"a": 1}]), ConfigError, "linux.seccomp.architectures[0]",
                 id="arch-not-string"),
    pytest.param({"defaultAction": ["SCMP_ACT_ALLOW"]}, ConfigError,
                 "linux.seccomp.defaultAction", id="action-not-string"),
])
def test_validate_rejects(config: object, error: type[ConfigError], field: str) -> None:
    with pytest.raises(error) as exc:
        seccomp.validate(config)  # type: ignore[arg-type]
    assert type(exc.value) is error
    assert exc.value.field == field
    assert str(exc.value).startswith(f"config.json: {field}: ")


def test_validate_uses_the_given_field_prefix() -> None:
    with pytest.raises(ConfigError) as exc:
        seccomp.validate(cfg(syscalls=[rule([])]), field="spec.linux.seccomp")
    assert exc.value.field == "spec.linux.seccomp.syscalls[0].names"


# ---------------------------------------------------------------------------------------------
# plan


@pytest.mark.parametrize("action, errno_ret, value", [
    pytest.param("SCMP_ACT_ERRNO", None, 0x00050000 | errno.EPERM, id="errno-default-eperm"),
    pytest.param("SCMP_ACT_ERRNO", errno.ENOSPC, 0x00050000 | errno.ENOSPC, id="errno-ret"),
    pytest.param("SCMP_ACT_ERRNO", 0, 0x00050000, id="errno-zero"),
    pytest.param("SCMP_ACT_TRACE", None, 0x7FF00000 | errno.EPERM, id="trace-default-eperm"),
    pytest.param("SCMP_ACT_TRACE", 7, 0x7FF00007, id="trace-ret"),
    pytest.param("SCMP_ACT_KILL", None, 0, id="kill-is-kill-thread"),
    pytest.param("SCMP_ACT_KILL_THREAD", None, 0, id="kill-thread"),
    pytest.param("SCMP_ACT_KILL_PROCESS", None, 0x80000000, id="kill-process"),
    pytest.param("SCMP_ACT_TRAP", None, 0x00030000, id="trap"),
    pytest.param("SCMP_ACT_LOG", None, 0x7FFC0000, id="log"),
    pytest.param("SCMP_ACT_ALLOW", None, 0x7FFF0000, id="allow"),
])
def test_action_value(action: str, errno_ret: int | None, value: int) -> None:
    assert seccomp.action_value(action, errno_ret) == value


EQ, NE, MASKED = 4, 1, 7
EPERM_ACT = 0x00050000 | errno.EPERM


@pytest.mark.parametrize("config, rules", [
    pytest.param(cfg(syscalls=[rule(["mkdir", "mkdirat"])]),
                 [("mkdir", EPERM_ACT, ()), ("mkdirat", EPERM_ACT, ())], id="names-expand"),
    pytest.param(cfg(syscalls=[rule(["socket"], args=[arg(0, "SCMP_CMP_EQ", 1),
                                                      arg(1, "SCMP_CMP_MASKED_EQ", 0xF, 2)])]),
                 [("socket", EPERM_ACT, ((0, EQ, 1, 0), (1, MASKED, 0xF, 2)))],
                 id="different-args-and-in-one-rule"),
    pytest.param(cfg(syscalls=[rule(["personality"], args=[arg(0, "SCMP_CMP_EQ", 8),
                                                           arg(0, "SCMP_CMP_EQ", 0x20000)])]),
                 [("personality", EPERM_ACT, ((0, EQ, 8, 0),)),
                  ("personality", EPERM_ACT, ((0, EQ, 0x20000, 0),))],
                 id="same-arg-split-like-runc"),
    pytest.param(cfg(syscalls=[rule(["x"], args=[arg(0, "SCMP_CMP_NE", 1), arg(1, "SCMP_CMP_EQ",
                                                 2), arg(0, "SCMP_CMP_NE", 3)])]),
                 [("x", EPERM_ACT, ((0, NE, 1, 0),)), ("x", EPERM_ACT, ((1, EQ, 2, 0),)),
                  ("x", EPERM_ACT, ((0, NE, 3, 0),))], id="any-repeat-splits-all"),
    pytest.param(cfg(syscalls=[rule(["read"], action=ALLOW), rule(["mkdir"])]),
                 [("mkdir", EPERM_ACT, ())], id="rule-equal-to-default-dropped"),
    pytest.param({"defaultAction": ERRNO, "syscalls": [rule(["a"]), rule(["b"], errnoRet=2)]},
                 [("b", 0x00050002, ())], id="errno-equal-to-default-dropped"),
    pytest.param(cfg(syscalls=[rule(["a"]), rule(["a"])]), [("a", EPERM_ACT, ())],
                 id="duplicates-once"),
])
def test_plan_rules(config: dict[str, object],
                    rules: list[tuple[str, int, tuple[tuple[int, ...], ...]]]) -> None:
    got = seccomp.plan(config)
    assert [(r.name, r.action, r.conditions) for r in got.rules] == rules


def test_plan_default_arches_and_flags() -> None:
    p = seccomp.plan({"defaultAction": ERRNO, "defaultErrnoRet": errno.ENOSYS,
                      "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X32", "SCMP_ARCH_X86_64"],
                      "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_LOG"]})
    assert p.default_action == 0x00050000 | errno.ENOSYS
    assert p.arches == ["x86_64", "x32"]
    assert p.flags == ["SECCOMP_FILTER_FLAG_LOG"]


# ---------------------------------------------------------------------------------------------
# the libseccomp executor against a recording fake


class FakeLib:
    """Records the libseccomp calls _install makes; `fail` maps a function to its return code."""

    KNOWN = {"mkdir": 83, "socket": 41, "getpid": 39}

    def __init__(self, **fail: int) -> None:
        self.fail = fail
        self.calls: list[tuple[object, ...]] = []

    def _rc(self, fn: str) -> int:
        return self.fail.get(fn, 0)

    def seccomp_init(self, action: int) -> int:
        self.calls.append(("init", action))
        return 0 if "seccomp_init" in self.fail else 1234

    def seccomp_release(self, ctx: int) -> None:
        self.calls.append(("release", ctx))

    def seccomp_attr_set(self, ctx: int, attr: int, value: int) -> int:
        self.calls.append(("attr", attr, value))
        return self.fail.get(f"attr{attr}", 0)

    def seccomp_arch_resolve_name(self, token: bytes) -> int:
        return 0 if token == b"loongarch64" else 0x40000000 | len(token)

    def seccomp_arch_add(self, ctx: int, arch: int) -> int:
        self.calls.append(("arch", arch))
        return self._rc("seccomp_arch_add")

    def seccomp_syscall_resolve_name(self, name: bytes) -> int:
        return self.KNOWN.get(name.decode(), -1)

    def seccomp_rule_add_array(self, ctx: int, action: int, nr: int, n: int,
                               arr: ctypes.Array[seccomp._ArgCmp]) -> int:
        conds = [(a.arg, a.op, a.datum_a, a.datum_b) for a in arr[:n]]
        self.calls.append(("rule", action, nr, conds))
        return self._rc("seccomp_rule_add_array")

    def seccomp_load(self, ctx: int) -> int:
        self.calls.append(("load",))
        return self._rc("seccomp_load")

    def seccomp_version(self) -> object:
        return ctypes.pointer(seccomp._Version(2, 5, 4))


def install(config: dict[str, object], lib: FakeLib) -> None:
    seccomp.validate(config)
    seccomp._install(seccomp.plan(config), lib)


def test_install_call_sequence() -> None:
    lib = FakeLib()
    install({"defaultAction": ERRNO, "architectures": ["SCMP_ARCH_X86"],
             "flags": ["SECCOMP_FILTER_FLAG_LOG"],
             "syscalls": [rule(["getpid", "no_such_syscall"], action=ALLOW),
                          rule(["socket"], action=ALLOW, args=[arg(0, "SCMP_CMP_NE", 40)])]},
            lib)
    assert lib.calls == [
        ("init", EPERM_ACT),
        ("attr", 3, 0),  # no_new_privs is the caller's business
        ("attr", 9, 1),
        ("attr", 4, 1),
        ("arch", 0x40000003),
        ("attr", 6, 1),  # SECCOMP_FILTER_FLAG_LOG
        ("rule", 0x7FFF0000, 39, []),  # no_such_syscall skipped
        ("rule", 0x7FFF0000, 41, [(0, NE, 40, 0)]),
        ("load",),
        ("release", 1234),
    ]


@pytest.mark.parametrize("config, fail, message", [
    pytest.param(cfg(), {"seccomp_init": 1}, "seccomp_init failed", id="init"),
    pytest.param(cfg(architectures=["SCMP_ARCH_LOONGARCH64"]), {},
                 "SCMP_ARCH_LOONGARCH64 is not known to libseccomp 2.5.4", id="arch-unknown"),
    pytest.param(cfg(architectures=["SCMP_ARCH_X86"]), {"seccomp_arch_add": -errno.EINVAL},
                 "adding architecture SCMP_ARCH_X86", id="arch-add"),
    pytest.param(cfg(flags=["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]),
                 {"attr10": -errno.EINVAL},
                 "flag SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV is not supported", id="flag"),
    pytest.param(cfg(syscalls=[rule(["mkdir"])]), {"seccomp_rule_add_array": -errno.EINVAL},
                 "adding the rule for syscall mkdir", id="rule"),
    pytest.param(cfg(), {"seccomp_load": -errno.EACCES}, "set no_new_privs", id="load-eacces"),
    pytest.param(cfg(), {"seccomp_load": -errno.EINVAL}, "loading the filter: Invalid",
                 id="load-einval"),
])
def test_install_failures(config: dict[str, object], fail: dict[str, int], message: str) -> None:
    lib = FakeLib(**fail)
    with pytest.raises(SetupError, match=message):
        install(config, lib)
    if "seccomp_init" not in fail:
        assert lib.calls[-1] == ("release", 1234)  # the context is freed on every path


def test_install_ignores_arch_already_present() -> None:
    lib = FakeLib(seccomp_arch_add=-errno.EEXIST)
    install(cfg(architectures=["SCMP_ARCH_X86_64"], syscalls=[rule(["mkdir"])]), lib)
    assert ("load",) in lib.calls


class ExportingLib(FakeLib):
    """FakeLib that also exports: `attrs` are the attribute values libseccomp reports."""

    def __init__(self, attrs: dict[int, int], code: bytes = b"\x06" * 16, **fail: int) -> None:
        super().__init__(**fail)
        self.attrs = attrs
        self.code = code

    def seccomp_attr_get(self, ctx: int, attr: int, value: Any) -> int:
        if attr not in self.attrs:
            return -errno.EINVAL  # an attribute this libseccomp does not know
        value._obj.value = self.attrs[attr]
        return 0

    def seccomp_export_bpf(self, ctx: int, fd: int) -> int:
        self.calls.append(("export",))
        if "seccomp_export_bpf" in self.fail:
            return self.fail["seccomp_export_bpf"]
        os.write(fd, self.code)
        return 0


@pytest.mark.parametrize("attrs, flags", [
    pytest.param({4: 1, 6: 0, 7: 0}, 1, id="tsync"),
    pytest.param({4: 1, 6: 1, 7: 1}, 1 | 2 | 4, id="tsync-log-spec-allow"),
    pytest.param({4: 0, 6: 0, 7: 0, 10: 1}, 32, id="wait-killable-recv"),
    pytest.param({}, 0, id="none-known"),
])
def test_export_flags_and_program(attrs: dict[int, int], flags: int) -> None:
    lib = ExportingLib(attrs)
    got = seccomp._export(seccomp.plan(cfg(syscalls=[rule(["getpid"])])), lib)
    assert got == (flags, b"\x06" * 16)
    assert ("load",) not in lib.calls  # compiled, never loaded here
    assert lib.calls[-2:] == [("export",), ("release", 1234)]


def test_export_failure_is_reported_and_releases() -> None:
    lib = ExportingLib({}, seccomp_export_bpf=-errno.ENOMEM)
    with pytest.raises(SetupError, match="exporting the filter: Cannot allocate memory"):
        seccomp._export(seccomp.plan(cfg()), lib)
    assert lib.calls[-1] == ("release", 1234)


def test_build_failure_releases_the_context() -> None:
    lib = ExportingLib({}, seccomp_rule_add_array=-errno.EINVAL)
    with pytest.raises(SetupError, match="adding the rule for syscall getpid"):
        seccomp._export(seccomp.plan(cfg(syscalls=[rule(["getpid"])])), lib)
    assert lib.calls[-1] == ("release", 1234)
    assert ("export",) not in lib.calls


def test_load_validates_first() -> None:
    with pytest.raises(ConfigError, match="defaultAction"):
        seccomp.load({"defaultAction": "SCMP_ACT_NOPE"})


# ---------------------------------------------------------------------------------------------
# Docker's default profile


def allowed(profile: dict[str, object]) -> set[str]:
    """Names allowed unconditionally by a profile."""
    return {n for r in profile["syscalls"] for n in r["names"]  # type: ignore[attr-defined]
            if r["action"] == ALLOW and not r.get("args")}


def rules_for(profile: dict[str, object], name: str) -> list[dict[str, object]]:
    return [r for r in profile["syscalls"] if name in r["names"]]  # type: ignore[attr-defined]


GATED = [
    ("CAP_SYS_ADMIN", {"mount", "umount2", "unshare", "setns", "clone", "clone3", "sethostname",
                       "fsopen", "move_mount", "bpf", "perf_event_open", "syslog", "quotactl"}),
    # ptrace and process_vm_* are allowed to all on kernels >= 4.8 (see the kernel test)
    ("CAP_SYS_PTRACE", {"kcmp", "pidfd_getfd", "process_madvise"}),
    ("CAP_SYS_MODULE", {"init_module", "finit_module", "delete_module"}),
    ("CAP_SYS_BOOT", {"reboot"}),
    ("CAP_SYS_TIME", {"settimeofday", "stime", "clock_settime", "clock_settime64"}),
    ("CAP_SYSLOG", {"syslog"}),
    ("CAP_SYS_NICE", {"mbind", "get_mempolicy", "set_mempolicy", "set_mempolicy_home_node"}),
    ("CAP_SYS_PACCT", {"acct"}),
    ("CAP_SYS_RAWIO", {"iopl", "ioperm"}),
    ("CAP_SYS_CHROOT", {"chroot"}),
    ("CAP_SYS_TTY_CONFIG", {"vhangup"}),
    ("CAP_BPF", {"bpf"}),
    ("CAP_PERFMON", {"perf_event_open"}),
    ("CAP_DAC_READ_SEARCH", {"open_by_handle_at"}),
]


@pytest.mark.parametrize("cap, names", [pytest.param(c, n, id=c) for c, n in GATED])
def test_default_profile_capability_gates(cap: str, names: set[str]) -> None:
    without = allowed(seccomp_profile.build([], arch="amd64", kernel=(6, 1)))
    with_cap = allowed(seccomp_profile.build([cap], arch="amd64", kernel=(6, 1)))
    assert names <= with_cap
    assert not names & without


@pytest.mark.parametrize("name", [
    pytest.param(n, id=n) for n in (
        "read", "write", "execve", "mkdir", "openat", "futex", "rseq", "statx",
        "io_uring_setup", "chroot", "fchmodat2", "name_to_handle_at")
])
def test_default_profile_allows_with_docker_default_caps(name: str) -> None:
    assert name in allowed(seccomp.default_profile())


@pytest.mark.parametrize("name", [
    pytest.param(n, id=n) for n in (
        "mount", "umount2", "unshare", "setns", "pivot_root", "kexec_load", "add_key", "keyctl",
        "request_key", "userfaultfd", "open_by_handle_at", "init_module", "reboot", "swapon",
        "bpf", "kcmp", "acct", "settimeofday", "syslog", "lsm_set_self_attr", "personality",
        "socket", "clone", "clone3")
])
def test_default_profile_denies_with_docker_default_caps(name: str) -> None:
    assert name not in allowed(seccomp.default_profile())


def test_default_profile_shape() -> None:
    p = seccomp.default_profile()
    assert p["defaultAction"] == ERRNO
    assert p["defaultErrnoRet"] == errno.EPERM
    seccomp.validate(p)
    assert seccomp.default_profile(None) == seccomp.default_profile(
        list(seccomp_profile.DOCKER_DEFAULT_CAPS))


@pytest.mark.parametrize("caps, expected", [
    pytest.param(None, [{"names": ["clone"], "action": ALLOW, "args": [
        {"index": 0, "value": 0x7E020000, "op": "SCMP_CMP_MASKED_EQ"}]}], id="default-caps"),
    pytest.param(["CAP_SYS_ADMIN"], [], id="sys-admin-no-flag-rule"),
])
def test_default_profile_clone_flag_rule(caps: list[str] | None,
                                         expected: list[dict[str, object]]) -> None:
    p = seccomp_profile.build(caps, arch="amd64")
    assert [r for r in rules_for(p, "clone") if r.get("args")] == expected


@pytest.mark.parametrize("caps, expected", [
    pytest.param(None, [{"names": ["clone3"], "action": ERRNO, "errnoRet": errno.ENOSYS}],
                 id="default-caps-enosys"),
    pytest.param(["CAP_SYS_ADMIN"], [], id="sys-admin-allowed"),
])
def test_default_profile_clone3(caps: list[str] | None,
                                expected: list[dict[str, object]]) -> None:
    p = seccomp_profile.build(caps, arch="amd64")
    assert [r for r in rules_for(p, "clone3") if r["action"] != ALLOW] == expected
    assert ("clone3" in allowed(p)) == (caps is not None)


def test_default_profile_personality_and_socket_arguments() -> None:
    p = seccomp.default_profile()
    args: list[Any] = [r["args"] for r in rules_for(p, "personality")]
    assert sorted(a[0]["value"] for a in args) == [0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF]
    assert all(len(a) == 1 and a[0]["op"] == "SCMP_CMP_EQ" for a in args)
    assert [r["args"] for r in rules_for(p, "socket")] == [
        [{"index": 0, "value": 40, "op": "SCMP_CMP_NE"}]]


@pytest.mark.parametrize("arch, architectures, present, absent", [
    pytest.param("amd64", ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
                 {"arch_prctl", "modify_ldt"}, {"set_tls", "cacheflush", "riscv_flush_icache"},
                 id="amd64"),
    pytest.param("arm64", ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
                 {"set_tls", "cacheflush", "arm_fadvise64_64", "sync_file_range2"},
                 {"arch_prctl", "modify_ldt"}, id="arm64"),
    pytest.param("s390x", ["SCMP_ARCH_S390X", "SCMP_ARCH_S390"], {"s390_runtime_instr"},
                 {"arch_prctl", "set_tls"}, id="s390x"),
    pytest.param("riscv64", ["SCMP_ARCH_RISCV64"], {"riscv_flush_icache", "riscv_hwprobe"},
                 {"arch_prctl"}, id="riscv64"),
    pytest.param("ppc64le", [], {"swapcontext", "sync_file_range2"}, {"arch_prctl"},
                 id="ppc64le-native-only"),
])
def test_default_profile_architectures(arch: str, architectures: list[str], present: set[str],
                                       absent: set[str]) -> None:
    p = seccomp_profile.build(None, arch=arch, kernel=(6, 1))
    assert p["architectures"] == architectures
    assert present <= allowed(p)
    assert not absent & allowed(p)


@pytest.mark.parametrize("arch, index", [
    pytest.param("amd64", 0, id="amd64-flags-first"),
    pytest.param("s390x", 1, id="s390x-flags-second"),
])
def test_default_profile_clone_flag_argument_index(arch: str, index: int) -> None:
    p = seccomp_profile.build(None, arch=arch)
    [r] = [r for r in rules_for(p, "clone") if r.get("args")]
    assert r["args"][0]["index"] == index  # type: ignore[index]


@pytest.mark.parametrize("caps, kernel, ptrace", [
    pytest.param(None, (4, 4), False, id="4.4-no-ptrace"),
    pytest.param(["CAP_SYS_PTRACE"], (4, 4), True, id="4.4-cap-sys-ptrace"),
    pytest.param(None, (4, 8), True, id="4.8-ptrace"),
    pytest.param(None, (6, 1), True, id="6.1-ptrace"),
])
def test_default_profile_ptrace_needs_kernel_4_8(caps: list[str] | None, kernel: tuple[int, int],
                                                 ptrace: bool) -> None:
    p = seccomp_profile.build(caps, arch="amd64", kernel=kernel)
    assert ({"ptrace", "process_vm_readv"} <= allowed(p)) is ptrace


@pytest.mark.parametrize("release, version", [
    pytest.param("6.18.44-fc-v782", (6, 18), id="suffix"),
    pytest.param("5.10.0-28-amd64", (5, 10), id="debian"),
    pytest.param("4.8", (4, 8), id="short"),
    pytest.param("6.1rc3", (6, 1), id="rc"),
    pytest.param("7", (7, 0), id="major-only"),
])
def test_kernel_version(release: str, version: tuple[int, int]) -> None:
    assert seccomp_profile.kernel_version(release) == version


def test_default_profile_plan_has_no_rule_equal_to_default() -> None:
    p = seccomp.plan(seccomp.default_profile(["CAP_SYS_ADMIN"]))
    assert p.rules
    assert all(r.action != p.default_action for r in p.rules)


# ---------------------------------------------------------------------------------------------
# features and import cost


def test_features_reflect_libseccomp() -> None:
    f = seccomp.features()
    assert f["enabled"] is True
    assert {"SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL"} <= set(f["actions"])
    assert "SCMP_ACT_NOTIFY" not in f["actions"]  # no listener support
    assert f["operators"] == ["SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ",
                              "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ"]
    native = {"x86_64": "SCMP_ARCH_X86_64", "aarch64": "SCMP_ARCH_AARCH64"}.get(os.uname().machine)
    if native:
        assert native in f["archs"]
    assert set(f["archs"]) <= set(seccomp.ARCHES)
    assert f["knownFlags"] == ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
                               "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
                               "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]
    assert set(f["supportedFlags"]) <= set(f["knownFlags"])
    # validate() accepts everything features() advertises
    seccomp.validate({"defaultAction": ALLOW, "architectures": f["archs"],
                      "flags": f["supportedFlags"],
                      "syscalls": [rule(["getpid"], action=a) for a in f["actions"]
                                   if a != ALLOW]})


def test_features_without_libseccomp(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing() -> None:
        raise SetupError("seccomp: cannot load libseccomp.so.2")

    monkeypatch.setattr(seccomp, "_lib", missing)
    assert seccomp.features() == {"enabled": False}


GETPID = {"x86_64": 39, "aarch64": 172}.get(os.uname().machine)


@pytest.mark.parametrize("name, number", [
    pytest.param("no_such_syscall_xyz", None, id="unknown"),
    pytest.param("getpid", GETPID, id="getpid", marks=pytest.mark.skipif(
        GETPID is None, reason="no expected number for this architecture")),
])
def test_syscall_number(name: str, number: int | None) -> None:
    assert seccomp.syscall_number(name) == number


@pytest.mark.parametrize("module", [
    pytest.param("runtime.oci.seccomp", id="seccomp"),
    pytest.param("runtime.oci.seccomp_profile", id="seccomp_profile"),
])
def test_import_is_light(module: str) -> None:
    # ctypes included: every create validates linux.seccomp; only a compile needs ctypes
    # -S: without site, whose .pth files may import re/typing themselves; -B: no .pyc in the tree
    code = (f"import sys, {module}\n"
            "heavy = {'re', 'enum', 'typing', 'json', 'dataclasses', 'functools', 'subprocess',"
            " 'platform', 'ctypes'} & set(sys.modules)\n"
            "print(sorted(heavy))\n")
    out = subprocess.run([sys.executable, "-S", "-B", "-c", code], cwd=MAIN, check=True,
                         capture_output=True, text=True, env={"PYTHONPATH": MAIN})
    assert out.stdout.strip() == "[]"
