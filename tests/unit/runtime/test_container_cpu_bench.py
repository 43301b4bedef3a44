"""bench/container_cpu.py's command line: the flags `make bench` and the docs use."""

from __future__ import annotations

import importlib.util
import os
from types import ModuleType

import pytest

MAIN = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "container_cpu_bench", os.path.join(MAIN, "bench", "container_cpu.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("argv, runs, modes", [
    pytest.param([], 15, ["inproc", "cli", "runc"], id="defaults"),
    pytest.param(["--runs", "3"], 3, ["inproc", "cli", "runc"], id="runs"),
    pytest.param(["--modes", "cli,runc"], 15, ["cli", "runc"], id="modes"),
    pytest.param(["--modes=inproc", "--runs=7"], 7, ["inproc"], id="equals-form"),
])
def test_flags(bench: ModuleType, argv: list[str], runs: int, modes: list[str]) -> None:
    args = bench.parse_args(argv)
    assert (args.runs, args.modes) == (runs, modes)


@pytest.mark.parametrize("argv, message", [
    pytest.param(["--modes", "cli,crun"], "unknown mode(s) crun", id="unknown-mode"),
    pytest.param(["--modes", ""], "unknown mode(s) ''", id="empty-modes"),
    pytest.param(["--runs", "many"], "argument --runs: invalid int value", id="runs-not-int"),
    pytest.param(["--run", "3"], "unrecognized arguments", id="unknown-flag"),
])
def test_bad_flags_are_named(bench: ModuleType, argv: list[str], message: str,
                             capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        bench.parse_args(argv)
    assert e.value.code == 2
    assert message in capsys.readouterr().err
