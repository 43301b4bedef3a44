"""kubectl's JSONPath subset."""

from __future__ import annotations

from typing import Any

import pytest

from clusterctl.jsonpath import JSONPathError, render

POD: dict[str, Any] = {
    "metadata": {"name": "web", "labels": {"app": "web", "tier": "fe"}},
    "spec": {"containers": [{"name": "a", "image": "nginx", "ports": [{"port": 80}]},
                            {"name": "b", "image": "redis", "ports": [{"port": 6379}]}]},
    "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"},
                                                  {"type": "Scheduled", "status": "True"}]},
}
LIST = {"kind": "List", "items": [POD, {**POD, "metadata": {"name": "db"}}]}


@pytest.mark.parametrize(("template", "obj", "want"), [
    pytest.param("{.metadata.name}", POD, "web", id="field"),
    pytest.param("name={.metadata.name}!", POD, "name=web!", id="text-around"),
    pytest.param("{.spec.containers[*].image}", POD, "nginx redis", id="wildcard"),
    pytest.param("{.spec.containers[1].name}", POD, "b", id="index"),
    pytest.param("{.spec.containers[-1].name}", POD, "b", id="negative-index"),
    pytest.param("{.spec.containers[0:1].name}", POD, "a", id="slice"),
    pytest.param("{..port}", POD, "80 6379", id="recursive"),
    pytest.param("{.metadata.labels['app']}", POD, "web", id="quoted-key"),
    pytest.param('{.status.conditions[?(@.type=="Ready")].status}', POD, "True",
                 id="filter"),
    pytest.param("{.spec.containers[?(@.image!='nginx')].name}", POD, "b",
                 id="filter-not-equal"),
    pytest.param("{.metadata.labels}", POD, '{"app":"web","tier":"fe"}', id="map-as-json"),
    pytest.param("{.metadata.missing}", POD, "", id="missing-is-empty"),
    pytest.param('{range .items[*]}{.metadata.name}{"\\n"}{end}', LIST, "web\ndb\n",
                 id="range"),
    pytest.param("{range .items[*]}[{range .spec.containers[*]}{.name},{end}]{end}", LIST,
                 "[a,b,][a,b,]", id="nested-range"),
    pytest.param("{$.kind}", LIST, "List", id="root"),
])
def test_render(template: str, obj: Any, want: str) -> None:
    assert render(template, obj) == want


@pytest.mark.parametrize("template", [
    pytest.param("{.metadata.name", id="unclosed"),
    pytest.param("{range .items[*]}{.x}", id="range-without-end"),
    pytest.param("{.a[?(nonsense)]}", id="bad-filter"),
])
def test_bad_templates_are_errors(template: str) -> None:
    with pytest.raises(JSONPathError):
        render(template, POD)
