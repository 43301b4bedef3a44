"""clusterctl logs: --since durations, POD arguments and option checks."""

from __future__ import annotations

import argparse

import pytest

from clusterctl.commands import logs
from clusterctl.session import CLIError


@pytest.mark.parametrize(("text", "seconds"), [
    pytest.param("30s", 30, id="seconds"),
    pytest.param("5m", 300, id="minutes"),
    pytest.param("1h30m", 5400, id="compound"),
    pytest.param("1.5h", 5400, id="fraction"),
    pytest.param("1500ms", 2, id="millis-round-up"),
    pytest.param("10ms", 1, id="at-least-one-second"),
])
def test_since_durations(text: str, seconds: int) -> None:
    assert logs.parse_duration(text) == seconds


@pytest.mark.parametrize(("text", "message"), [
    pytest.param("5", "invalid duration", id="no-unit"),
    pytest.param("5d", "invalid duration", id="days"),
    pytest.param("m5", "invalid duration", id="unit-first"),
    pytest.param("5m junk", "invalid duration", id="trailing"),
    pytest.param("0s", 'must be > 0, got "0s"', id="zero"),
])
def test_bad_since_durations(text: str, message: str) -> None:
    with pytest.raises(CLIError, match=message):
        logs.parse_duration(text)


@pytest.mark.parametrize(("text", "name"), [
    pytest.param("web", "web", id="bare"),
    pytest.param("pod/web", "web", id="pod-slash"),
    pytest.param("pods/web", "web", id="pods-slash"),
])
def test_pod_names(text: str, name: str) -> None:
    assert logs.pod_name(text) == name


@pytest.mark.parametrize("text", [
    pytest.param("deploy/web", id="other-kind"),
    pytest.param("pod/", id="no-name"),
])
def test_bad_pod_names(text: str) -> None:
    with pytest.raises(CLIError, match="only pods have logs"):
        logs.pod_name(text)


@pytest.mark.parametrize(("argv", "message"), [
    pytest.param(["web", "--tail", "-2"], "--tail: must be >= -1, got -2", id="tail"),
    pytest.param(["web", "--limit-bytes", "0"], "--limit-bytes: must be > 0, got 0",
                 id="limit-bytes"),
    pytest.param(["web", "--since", "soon"], "invalid duration", id="since"),
])
def test_options_are_checked_before_any_call(argv: list[str], message: str) -> None:
    p = argparse.ArgumentParser()
    logs.add_arguments(p, "logs")
    with pytest.raises(CLIError, match=message):
        logs.run(p.parse_args(argv))  # no config is read: it fails first
