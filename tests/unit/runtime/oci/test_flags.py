from __future__ import annotations

import pytest

from runtime.oci.cli.flags import BOOL, INT, LIST, STR, UsageError, parse

SPEC = {"bundle": (STR, ("b",)), "detach": (BOOL, ("d",)), "n": (INT, ()),
        "env": (LIST, ("e",))}


@pytest.mark.parametrize("argv,values,rest", [
    pytest.param(["--bundle", "x", "id"], {"bundle": "x"}, ["id"], id="long-space"),
    pytest.param(["--bundle=x", "id"], {"bundle": "x"}, ["id"], id="long-eq"),
    pytest.param(["-bundle", "x", "id"], {"bundle": "x"}, ["id"], id="go-style"),
    pytest.param(["-b", "x", "-d", "id"], {"bundle": "x", "detach": True}, ["id"], id="short"),
    pytest.param(["--detach=false", "id"], {"detach": False}, ["id"], id="bool-false"),
    pytest.param(["-e", "A=1", "--env", "B=2", "id"], {"env": ["A=1", "B=2"]}, ["id"],
                 id="list"),
    pytest.param(["id", "sh", "-c", "x"], {}, ["id", "sh", "-c", "x"], id="stop-at-positional"),
    pytest.param(["--", "-id"], {}, ["-id"], id="double-dash"),
    pytest.param(["--n", "7", "x"], {"n": 7}, ["x"], id="int"),
])
def test_parse(argv: list[str], values: dict[str, object], rest: list[str]) -> None:
    got, got_rest = parse(SPEC, argv)
    for k, v in values.items():
        assert got[k] == v
    assert got_rest == rest


@pytest.mark.parametrize("argv,words", [
    pytest.param(["--nope"], "not defined", id="unknown"),
    pytest.param(["--bundle"], "needs an argument", id="missing-value"),
    pytest.param(["--n", "x"], "must be an integer", id="bad-int"),
])
def test_parse_errors(argv: list[str], words: str) -> None:
    with pytest.raises(UsageError, match=words):
        parse(SPEC, argv)


def test_interspersed() -> None:
    got, rest = parse(SPEC, ["id", "--detach"], interspersed=True)
    assert got["detach"] is True and rest == ["id"]
