"""Label and field selectors: Kubernetes' grammar and matching rules."""

from __future__ import annotations

import pytest

from api import selectors
from api.selectors import SelectorError

LABELS = {"env": "prod", "tier": "web", "example.com/team": "a"}


@pytest.mark.parametrize("text,expected", [
    pytest.param("", True, id="empty-matches-all"),
    pytest.param("env=prod", True, id="equal"),
    pytest.param("env==prod", True, id="double-equal"),
    pytest.param("env=dev", False, id="equal-other-value"),
    pytest.param("env!=dev", True, id="not-equal"),
    pytest.param("missing!=x", True, id="not-equal-matches-absent"),
    pytest.param("env in (dev,prod)", True, id="in"),
    pytest.param("env in (dev, qa)", False, id="in-miss"),
    pytest.param("missing in (x)", False, id="in-absent"),
    pytest.param("env notin (dev)", True, id="notin"),
    pytest.param("missing notin (x)", True, id="notin-matches-absent"),
    pytest.param("tier", True, id="exists"),
    pytest.param("!tier", False, id="not-exists"),
    pytest.param("!missing", True, id="not-exists-absent"),
    pytest.param("example.com/team=a", True, id="prefixed-key"),
    pytest.param("env=prod,tier in (web,api),!legacy", True, id="all-must-hold"),
    pytest.param("env=prod,tier=api", False, id="one-fails"),
    pytest.param(" env = prod , tier ", True, id="whitespace"),
])
def test_label_selector_matching(text: str, expected: bool) -> None:
    assert selectors.parse(text).matches(LABELS) is expected


@pytest.mark.parametrize("text,words", [
    pytest.param("env in dev", "parenthesised value list", id="in-without-parens"),
    pytest.param("env in ()", "at least one value", id="in-empty"),
    pytest.param("env in (a", "unbalanced", id="unbalanced"),
    pytest.param("-bad=x", "invalid label key", id="bad-key"),
    pytest.param("Bad.Prefix/x=y", "DNS subdomain", id="bad-prefix"),
    pytest.param("env=" + "v" * 64, "invalid label value", id="value-too-long"),
    pytest.param("env=prod,,tier", "empty requirement", id="empty-requirement"),
])
def test_label_selector_errors(text: str, words: str) -> None:
    with pytest.raises(SelectorError, match=words) as e:
        selectors.parse(text)
    assert str(e.value).startswith("unable to parse label selector")


def test_str_round_trips() -> None:
    text = "env=prod,tier!=cache,zone in (a,b),gpu,!legacy"
    assert str(selectors.parse(text)) == text
    assert str(selectors.parse(str(selectors.parse(text)))) == text


@pytest.mark.parametrize("sel,labels,expected", [
    pytest.param(None, {"a": "b"}, True, id="none-matches-all"),
    pytest.param({"matchLabels": {"app": "web"}}, {"app": "web", "x": "y"}, True, id="labels"),
    pytest.param({"matchLabels": {"app": "web"}}, {"app": "db"}, False, id="labels-miss"),
    pytest.param({"matchExpressions": [{"key": "tier", "operator": "In",
                                        "values": ["a", "b"]}]}, {"tier": "b"}, True, id="In"),
    pytest.param({"matchExpressions": [{"key": "tier", "operator": "NotIn",
                                        "values": ["a"]}]}, {}, True, id="NotIn-absent"),
    pytest.param({"matchExpressions": [{"key": "gpu", "operator": "Exists"}]}, {"gpu": ""},
                 True, id="Exists"),
    pytest.param({"matchExpressions": [{"key": "gpu", "operator": "DoesNotExist"}]},
                 {"gpu": "1"}, False, id="DoesNotExist"),
])
def test_structured_selector(sel: dict[str, object] | None, labels: dict[str, str],
                             expected: bool) -> None:
    assert selectors.from_label_selector(sel).matches(labels) is expected


@pytest.mark.parametrize("sel,words", [
    pytest.param({"matchExpressions": [{"key": "a", "operator": "Has"}]},
                 "spec.selector.matchExpressions[0].operator: must be one of", id="operator"),
    pytest.param({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]},
                 "spec.selector.matchExpressions[0].values: must be non-empty", id="in-empty"),
    pytest.param({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]},
                 "must be empty for Exists", id="exists-values"),
    pytest.param({"matchLabels": {"app": "we b"}}, "spec.selector.matchLabels: invalid label "
                 "value", id="label-value"),
])
def test_structured_selector_errors_name_the_field(sel: dict[str, object], words: str) -> None:
    with pytest.raises(SelectorError, match=words.replace("[", r"\[").replace("]", r"\]")):
        selectors.from_label_selector(sel, "spec.selector")


POD = {"metadata": {"name": "web-1", "namespace": "prod"},
       "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}}


@pytest.mark.parametrize("text,expected", [
    pytest.param("metadata.name=web-1", True, id="equal"),
    pytest.param("status.phase!=Running", False, id="not-equal"),
    pytest.param("spec.nodeName=", False, id="empty-value-vs-set"),
    pytest.param("spec.missing=", True, id="absent-is-empty"),
    pytest.param("metadata.namespace==prod,spec.nodeName=n1", True, id="all"),
])
def test_field_selector(text: str, expected: bool) -> None:
    assert selectors.parse_fields(text).matches(POD) is expected


@pytest.mark.parametrize("text,allowed,words", [
    pytest.param("status.phase", None, "is not field=value", id="no-operator"),
    pytest.param("=x", None, "has no field", id="no-field"),
    pytest.param("spec.replicas=3", frozenset({"metadata.name"}), "not supported",
                 id="not-allowed"),
])
def test_field_selector_errors(text: str, allowed: frozenset[str] | None, words: str) -> None:
    with pytest.raises(SelectorError, match=words):
        selectors.parse_fields(text, allowed)
