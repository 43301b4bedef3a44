"""`clusterctl exec [-i] [-t] POD [-c C] -- CMD [ARGS...]`: run a command in a container,
through the controlplane to the pod's node (kubectl exec); exits with its exit code.

    stdin (-i) ──pump thread──► ExecSession ──► NodeProxy.PodExec ──► the node's agent
    terminal size (-t, SIGWINCH) ─┘    │
    stdout/stderr ◄────────────────────┘ then the exit code: ours

With -t the local terminal is put in raw mode (keys, Ctrl-C included, go to the remote
command) and restored on the way out.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from clusterctl.session import CLIError, Session, warn


@dataclass(frozen=True)
class ExecArgs:
    pod: str
    container: str
    command: list[str]
    stdin: bool
    tty: bool


def _word_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="clusterctl exec", add_help=False, exit_on_error=False)
    p.add_argument("-i", "--stdin", action="store_true")
    p.add_argument("-t", "--tty", action="store_true")
    p.add_argument("-c", "--container", default="")
    p.add_argument("pod")
    p.add_argument("command", nargs="*")
    return p


def split_words(words: Sequence[str], *, container: str = "", stdin: bool = False,
                tty: bool = False) -> ExecArgs:
    """POD, options and the command from what follows the verb: options may come after
    POD; the command is what follows "--" (or, kubectl's deprecated form, what follows
    POD)."""
    words = list(words)
    if words[:1] == ["--"]:
        words = words[1:]
    before, command = (words[:words.index("--")], words[words.index("--") + 1:]) \
        if "--" in words else (words, [])
    try:
        ns, extra = _word_parser().parse_known_args(before)
    except argparse.ArgumentError as err:
        raise CLIError(f"exec: {err}") from None
    except SystemExit:
        raise CLIError("exec: want POD [-c CONTAINER] -- COMMAND [ARGS...]") from None
    if extra:
        raise CLIError(f"exec: unknown options {' '.join(extra)}")
    if ns.command and command:
        raise CLIError(f"exec: unexpected {' '.join(ns.command)} before --")
    command = command or ns.command
    if not command:
        raise CLIError("exec: a command is required: POD -- COMMAND [ARGS...]")
    pod = ns.pod
    kind, slash, name = pod.partition("/")
    if slash:
        if kind not in ("pod", "pods", "po") or not name:
            raise CLIError(f"{pod}: exec works on pods (want POD or pod/POD)")
        pod = name
    return ExecArgs(pod=pod, container=ns.container or container, command=command,
                    stdin=stdin or ns.stdin, tty=tty or ns.tty)


def add_arguments(p: argparse.ArgumentParser, verb: str) -> None:
    p.add_argument("-i", "--stdin", action="store_true", help="pass stdin to the command")
    p.add_argument("-t", "--tty", action="store_true", help="stdin is a TTY (raw mode)")
    p.add_argument("-c", "--container", default="", help="the container (default: the "
                   "pod's only one, or its kubectl.kubernetes.io/default-container)")
    p.add_argument("words", nargs=argparse.REMAINDER, metavar="POD [-c C] -- COMMAND ...")


@contextmanager
def raw_terminal(fd: int) -> Iterator[None]:
    """FD in raw mode for the duration, restored after (whatever happens)."""
    import termios
    import tty
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


@contextmanager
def forward_resizes(session: Any, fd: int) -> Iterator[None]:
    """Send FD's terminal size now and at every SIGWINCH."""
    import signal

    def send(*_: object) -> None:
        try:
            size = os.get_terminal_size(fd)
        except OSError:
            return
        session.resize(size.columns, size.lines)

    previous = signal.signal(signal.SIGWINCH, send)
    send()
    try:
        yield
    finally:
        signal.signal(signal.SIGWINCH, previous)


def relay(session: Any, *, stdout: Any, stderr: Any) -> int:
    """Write the session's output as it comes; the remote command's exit code."""
    for ev in session:
        if ev.kind == "stdout":
            stdout.write(ev.data)
            stdout.flush()
        elif ev.kind == "stderr":
            stderr.write(ev.data)
            stderr.flush()
        elif ev.kind == "exit":
            if ev.exit_code != 0:
                why = f": {ev.message}" if ev.message else ""
                stderr.write(f"command terminated with exit code {ev.exit_code}{why}\n"
                             .encode())
                stderr.flush()
            return int(ev.exit_code)
    raise CLIError("exec: the stream ended without the command's exit code")


def run(args: argparse.Namespace) -> int:
    a = split_words(args.words, container=args.container, stdin=args.stdin, tty=args.tty)
    in_fd = sys.stdin.fileno()
    use_tty = a.tty
    if use_tty and not (a.stdin and os.isatty(in_fd)):
        warn("Unable to use a TTY - input is not a terminal or the right kind of file"
             if a.stdin else "Unable to use a TTY - -t needs -i (stdin)")
        use_tty = False
    s = Session(args)
    session = s.client().pod_exec(a.pod, a.command, namespace=s.namespace,
                                  container=a.container, stdin=a.stdin, tty=use_tty)
    try:
        if a.stdin:
            session.pump(in_fd)
        if not use_tty:
            return relay(session, stdout=sys.stdout.buffer, stderr=sys.stderr.buffer)
        with raw_terminal(in_fd), forward_resizes(session, in_fd):
            return relay(session, stdout=sys.stdout.buffer, stderr=sys.stderr.buffer)
    finally:
        session.cancel()
        s.close()
