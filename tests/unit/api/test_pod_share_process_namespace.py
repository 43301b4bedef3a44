"""spec.shareProcessNamespace: a manifest with it applies (validated, kept as given), and
it cannot be true together with hostPID (Kubernetes' rule); errors name object and field."""

from __future__ import annotations

from typing import Any

import pytest

from api import kinds
from tests.unit.api.manifests import pod


@pytest.mark.parametrize("over", [
    pytest.param({"shareProcessNamespace": True}, id="shared"),
    pytest.param({"shareProcessNamespace": False}, id="not-shared"),
    pytest.param({"shareProcessNamespace": True, "hostPID": False}, id="shared-hostPID-false"),
    pytest.param({"shareProcessNamespace": False, "hostPID": True}, id="hostPID-alone"),
])
def test_valid_manifests_apply(over: dict[str, Any]) -> None:
    out = kinds.defaults(pod(**over))
    kinds.validate(out)
    for key, value in over.items():
        assert out["spec"][key] is value


def test_unset_stays_unset() -> None:
    out = kinds.defaults(pod())
    kinds.validate(out)
    assert "shareProcessNamespace" not in out["spec"]  # the agent reads "unset" as false


@pytest.mark.parametrize("over,message", [
    pytest.param({"shareProcessNamespace": True, "hostPID": True},
                 "Pod web-0: spec.shareProcessNamespace: must not be true when hostPID is "
                 "true", id="with-hostPID"),
    pytest.param({"shareProcessNamespace": "yes"},
                 "Pod web-0: spec.shareProcessNamespace: ", id="not-a-bool"),
])
def test_invalid_names_the_field(over: dict[str, Any], message: str) -> None:
    with pytest.raises(kinds.Invalid) as e:
        kinds.validate(kinds.defaults(pod(**over)))
    assert str(e.value).startswith(message), str(e.value)
