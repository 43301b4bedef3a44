"""corral-ctr run's flags (ctr/run_cmd.parse): -i, -t and their combinations, and the
usage errors that name the flag."""

from __future__ import annotations

import pytest

from runtime.service.ctr.conn import UsageError
from runtime.service.ctr.run_cmd import parse


@pytest.mark.parametrize(("args", "want"), [
    pytest.param(["img", "c1"], (False, False, False, False), id="plain"),
    pytest.param(["-i", "img", "c1", "cat"], (False, False, True, False), id="interactive"),
    pytest.param(["-it", "img", "c1", "sh"], (False, False, True, True), id="it"),
    pytest.param(["-t", "--rm", "img", "c1"], (True, False, False, True), id="tty-rm"),
    pytest.param(["--interactive", "--tty", "img", "c1"], (False, False, True, True),
                 id="long"),
    pytest.param(["-d", "img", "c1"], (False, True, False, False), id="detach"),
])
def test_flags(args: list[str], want: tuple[bool, bool, bool, bool]) -> None:
    a = parse(args)
    assert (a.rm, a.detach, a.interactive, a.tty) == want
    assert (a.image, a.name) == ("img", "c1")


@pytest.mark.parametrize(("args", "message"), [
    pytest.param(["-x", "img", "c1"], "-x: unknown flag", id="unknown"),
    pytest.param(["-ix", "img", "c1"], "-ix: unknown flag", id="unknown-in-a-group"),
    pytest.param(["-dit", "img", "c1"], "-d: cannot be used with -i or -t", id="detach-tty"),
    pytest.param(["-i", "img"], "usage: run", id="no-id"),
])
def test_usage_errors(args: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse(args)
