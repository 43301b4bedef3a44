"""volumeMounts[].subPath is checked at create: relative, without a `..` component
(the agent also refuses, at mount time, a subPath that a symlink leads out of the volume)."""

from __future__ import annotations

import pytest

from api import kinds
from tests.unit.api.manifests import at, pod

P = "Pod web-0: spec.containers[0].volumeMounts[0].subPath: "


@pytest.mark.parametrize("sub,message", [
    pytest.param("../../../../etc", P + "must not contain '..'", id="dotdot-first"),
    pytest.param("a/../../b", P + "must not contain '..'", id="dotdot-inside"),
    pytest.param("a/..", P + "must not contain '..'", id="dotdot-last"),
    pytest.param("/etc", P + "must be a relative path, got '/etc'", id="absolute"),
])
def test_a_sub_path_out_of_the_volume_is_refused(sub: str, message: str) -> None:
    obj = kinds.defaults(at(pod(), "spec.containers.0.volumeMounts.0.subPath", sub))
    with pytest.raises(kinds.Invalid) as e:
        kinds.validate(obj)
    assert message in str(e.value)


@pytest.mark.parametrize("sub", [
    pytest.param("logs", id="plain"),
    pytest.param("a/b/c", id="nested"),
    pytest.param("..data/key", id="dotdot-prefixed-name"),
    pytest.param("a..b", id="dots-inside-a-name"),
])
def test_a_relative_sub_path_is_accepted(sub: str) -> None:
    kinds.validate(kinds.defaults(at(pod(), "spec.containers.0.volumeMounts.0.subPath", sub)))
