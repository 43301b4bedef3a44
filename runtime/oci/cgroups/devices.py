"""Device access rules: devices.allow/deny on v1, an eBPF device filter on v2.

    OCI rules --rules()--> [Rule] --v1_line()--> "c 1:3 rwm" into devices.allow / devices.deny
                               \\--emulate()--> v1 semantics: default + exceptions
                                                 --assemble()--> BPF_PROG_TYPE_CGROUP_DEVICE
                                                 --bpf.py------> bpf(2) on the v2 cgroup

cgroup v2 has no devices files; runc and crun attach a small eBPF program instead. So that
a config means the same on both, `emulate` replays the rules the way the v1 kernel does
(security/device_cgroup.c): an "a" rule resets to allow-all or deny-all, other rules add to
or remove from the exception list. `assemble` hand-encodes the program that answers like v1
would: in deny-by-default mode a request is allowed when one exception covers all its
access bits; in allow-by-default mode it is denied when any exception overlaps them.
"""

from __future__ import annotations

import sys

from .fs import Controller

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Literal

WILDCARD = -1
# bpf_cgroup_dev_ctx encodings (include/uapi/linux/bpf.h), the same bits as v1's.
DEV_BLOCK, DEV_CHAR = 1, 2
ACC_MKNOD, ACC_READ, ACC_WRITE = 1, 2, 4
_TYPE_BITS = {"b": DEV_BLOCK, "c": DEV_CHAR}
_ACCESS_BITS = {"m": ACC_MKNOD, "r": ACC_READ, "w": ACC_WRITE}

# (allow, type, major, minor, access) with WILDCARD for "*"
Rule = tuple[bool, str, int, int, str]
# [type bits, major, minor, access bits]
Exception_ = list[int]


def rules(devices: list[dict[str, Any]]) -> list[Rule]:
    """OCI linux.resources.devices with the spec's defaults filled in (access: "rwm")."""
    out: list[Rule] = []
    for d in devices:
        major, minor = d.get("major"), d.get("minor")
        out.append((bool(d.get("allow")), d.get("type") or "a",
                    WILDCARD if major is None else int(major),
                    WILDCARD if minor is None else int(minor),
                    "rwm" if d.get("access") is None else str(d.get("access"))))
    return out


def v1_line(rule: Rule) -> str:
    _, t, major, minor, access = rule
    maj = "*" if major == WILDCARD else str(major)
    mnr = "*" if minor == WILDCARD else str(minor)
    return f"{t} {maj}:{mnr} {access}"


def _bits(access: str) -> int:
    return sum(_ACCESS_BITS[c] for c in set(access))


def emulate(rule_list: list[Rule]) -> tuple[bool, list[Exception_]]:
    """(default allow?, exceptions) after writing `rule_list` to a fresh v1 cgroup."""
    default_allow = True
    exceptions: list[Exception_] = []
    for allow, t, major, minor, access in rule_list:
        if t == "a":
            default_allow, exceptions = allow, []
            continue
        key, bits = [_TYPE_BITS[t], major, minor], _bits(access)
        if allow == default_allow:  # an exception to an exception: remove access bits
            for ex in exceptions:
                if ex[:3] == key:
                    ex[3] &= ~bits
            exceptions = [ex for ex in exceptions if ex[3]]
        else:
            for ex in exceptions:
                if ex[:3] == key:
                    ex[3] |= bits
                    break
            else:
                exceptions.append([*key, bits])
    return default_allow, exceptions


# eBPF opcodes (include/uapi/linux/bpf_common.h, bpf.h)
_LDX_W = 0x61     # BPF_LDX | BPF_MEM | BPF_W
_AND32_K = 0x54   # BPF_ALU | BPF_AND | BPF_K
_RSH32_K = 0x74   # BPF_ALU | BPF_RSH | BPF_K
_MOV32_X = 0xBC   # BPF_ALU | BPF_MOV | BPF_X
_MOV64_K = 0xB7   # BPF_ALU64 | BPF_MOV | BPF_K
_JNE32_K = 0x56   # BPF_JMP32 | BPF_JNE | BPF_K
_JNE32_X = 0x5E   # BPF_JMP32 | BPF_JNE | BPF_X
_JEQ32_K = 0x16   # BPF_JMP32 | BPF_JEQ | BPF_K
_EXIT = 0x95      # BPF_JMP | BPF_EXIT
_LITTLE = sys.byteorder == "little"
_ORDER: Literal["little", "big"] = "little" if _LITTLE else "big"


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    regs = (src << 4 | dst) if _LITTLE else (dst << 4 | src)
    if imm >= 1 << 31:  # u32 constants are encoded as s32
        imm -= 1 << 32
    return (bytes((code, regs)) + off.to_bytes(2, _ORDER, signed=True)
            + imm.to_bytes(4, _ORDER, signed=True))


def assemble(default_allow: bool, exceptions: list[Exception_]) -> bytes:
    """The device filter: r2 = type, r3 = access, r4 = major, r5 = minor; r0 = verdict."""
    prog = [
        _insn(_LDX_W, 2, 1, 0), _insn(_AND32_K, 2, imm=0xFFFF),
        _insn(_LDX_W, 3, 1, 0), _insn(_RSH32_K, 3, imm=16),
        _insn(_LDX_W, 4, 1, 4), _insn(_LDX_W, 5, 1, 8),
    ]
    verdict = 0 if default_allow else 1  # what a matching exception answers
    for t, major, minor, access in exceptions:
        # each check is (opcode, dst, src, imm); any mismatch jumps past this block
        checks = [(_JNE32_K, 2, 0, t)]
        if access != 7:
            checks.append((_MOV32_X, 1, 3, 0))
            checks.append((_AND32_K, 1, 0, access))
            checks.append((_JEQ32_K, 1, 0, 0) if default_allow else (_JNE32_X, 1, 3, 0))
        elif default_allow:
            checks.append((_JEQ32_K, 3, 0, 0))
        if major != WILDCARD:
            checks.append((_JNE32_K, 4, 0, major))
        if minor != WILDCARD:
            checks.append((_JNE32_K, 5, 0, minor))
        size = len(checks) + 2
        for i, (code, dst, src, imm) in enumerate(checks):
            jumps = code in (_JNE32_K, _JNE32_X, _JEQ32_K)
            prog.append(_insn(code, dst, src, size - i - 1 if jumps else 0, imm))
        prog += [_insn(_MOV64_K, 0, imm=verdict), _insn(_EXIT)]
    prog += [_insn(_MOV64_K, 0, imm=1 if default_allow else 0), _insn(_EXIT)]
    return b"".join(prog)


class DevicesV1(Controller):
    """devices.allow / devices.deny, one write per rule, in the order given."""

    name = "devices"
    section = "devices"

    def apply(self, resources: dict[str, Any], path: str) -> None:
        for i, rule in enumerate(rules(resources.get("devices") or [])):
            self.put(path, "devices.allow" if rule[0] else "devices.deny", v1_line(rule),
                     f"[{i}]")

    def field_of(self, key: str) -> str:
        return f"{self.field}.devices{key}"


class DevicesV2(Controller):
    """The eBPF device filter equivalent to the v1 rules."""

    name = "devices"
    section = "devices"

    def apply(self, resources: dict[str, Any], path: str) -> None:
        devices = resources.get("devices")
        if devices:
            from .bpf import attach_device_filter
            attach_device_filter(path, assemble(*emulate(rules(devices))))
