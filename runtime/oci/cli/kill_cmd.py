"""corral-runc kill [--all] ID [SIGNAL]   (SIGNAL: 9, KILL or SIGKILL; default SIGTERM)"""

from __future__ import annotations

from .flags import BOOL, UsageError, parse
from .main import Globals, need_id

FLAGS = {"all": (BOOL, ("a",))}

SIGNALS = {
    "HUP": 1, "INT": 2, "QUIT": 3, "ILL": 4, "TRAP": 5, "ABRT": 6, "IOT": 6, "BUS": 7,
    "FPE": 8, "KILL": 9, "USR1": 10, "SEGV": 11, "USR2": 12, "PIPE": 13, "ALRM": 14,
    "TERM": 15, "STKFLT": 16, "CHLD": 17, "CONT": 18, "STOP": 19, "TSTP": 20, "TTIN": 21,
    "TTOU": 22, "URG": 23, "XCPU": 24, "XFSZ": 25, "VTALRM": 26, "PROF": 27, "WINCH": 28,
    "IO": 29, "POLL": 29, "PWR": 30, "SYS": 31,
}


def parse_signal(text: str) -> int:
    if text.isdigit():
        n = int(text)
        if 0 < n <= 64:
            return n
    else:
        name = text.upper()
        name = name[3:] if name.startswith("SIG") else name
        if name in SIGNALS:
            return SIGNALS[name]
        if name.startswith("RTMIN") or name.startswith("RTMAX"):
            base = 34 if name.startswith("RTMIN") else 64
            off = name[5:]
            try:
                n = base + int(off) if off else base
            except ValueError:
                n = 0
            if 34 <= n <= 64:
                return n
    raise UsageError(f"unknown signal {text!r}")


def main(g: Globals, argv: list[str]) -> int:
    v, args = parse(FLAGS, argv, interspersed=True)
    cid = need_id(args, "kill")
    sig = parse_signal(args[1]) if len(args) > 1 else 15
    from ..container import kill
    kill(g.store().load(cid), sig, all_processes=bool(v["all"]))
    return 0
