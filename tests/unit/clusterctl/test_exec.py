"""clusterctl exec: splitting POD, options and the command; relaying output and exit."""

from __future__ import annotations

import io
from dataclasses import dataclass

import pytest

from api.client import ExecEvent
from clusterctl.commands import exec as exec_cmd
from clusterctl.session import CLIError


@pytest.mark.parametrize(("words", "want"), [
    pytest.param(["web", "--", "ls", "-l"], ("web", "", ["ls", "-l"], False, False),
                 id="plain"),
    pytest.param(["web", "-c", "app", "--", "sh", "-c", "x"],
                 ("web", "app", ["sh", "-c", "x"], False, False), id="container-after-pod"),
    pytest.param(["web", "-it", "--", "sh"], ("web", "", ["sh"], True, True),
                 id="flags-after-pod"),
    pytest.param(["pod/web", "--", "echo", "--", "x"], ("web", "", ["echo", "--", "x"],
                                                        False, False), id="inner-dashes"),
    pytest.param(["web", "date"], ("web", "", ["date"], False, False), id="deprecated-form"),
])
def test_words_split(words: list[str],
                     want: tuple[str, str, list[str], bool, bool]) -> None:
    a = exec_cmd.split_words(words)
    assert (a.pod, a.container, a.command, a.stdin, a.tty) == want


def test_flags_before_pod_are_kept() -> None:
    a = exec_cmd.split_words(["web", "--", "sh"], container="c", stdin=True, tty=True)
    assert (a.container, a.stdin, a.tty) == ("c", True, True)


@pytest.mark.parametrize(("words", "message"), [
    pytest.param(["web"], "a command is required", id="no-command"),
    pytest.param(["web", "--"], "a command is required", id="empty-command"),
    pytest.param([], "want POD", id="no-pod"),
    pytest.param(["web", "--bogus", "--", "ls"], "unknown options --bogus", id="bad-flag"),
    pytest.param(["web", "ls", "--", "ls"], "unexpected ls before --", id="two-commands"),
    pytest.param(["deploy/web", "--", "ls"], "exec works on pods", id="other-kind"),
])
def test_bad_words(words: list[str], message: str) -> None:
    with pytest.raises(CLIError, match=message):
        exec_cmd.split_words(words)


@dataclass
class Canned:
    events: list[ExecEvent]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.events)


@pytest.mark.parametrize(("events", "rc", "out", "err"), [
    pytest.param([ExecEvent("stdout", b"hi\n"), ExecEvent("exit")], 0, b"hi\n", b"",
                 id="success"),
    pytest.param([ExecEvent("stderr", b"oops\n"), ExecEvent("exit", exit_code=7)], 7, b"",
                 b"oops\ncommand terminated with exit code 7\n", id="failure"),
    pytest.param([ExecEvent("exit", exit_code=137, message="killed")], 137, b"",
                 b"command terminated with exit code 137: killed\n", id="with-message"),
])
def test_relay_returns_the_remote_exit_code(events: list[ExecEvent], rc: int, out: bytes,
                                            err: bytes) -> None:
    stdout, stderr = io.BytesIO(), io.BytesIO()
    assert exec_cmd.relay(Canned(events), stdout=stdout, stderr=stderr) == rc
    assert (stdout.getvalue(), stderr.getvalue()) == (out, err)


def test_a_stream_without_an_exit_is_an_error() -> None:
    with pytest.raises(CLIError, match="without the command's exit code"):
        exec_cmd.relay(Canned([ExecEvent("stdout", b"x")]), stdout=io.BytesIO(),
                       stderr=io.BytesIO())
