"""Resource names as kubectl takes them, and the argument forms of get/delete."""

from __future__ import annotations

import pytest

from clusterctl.resources import Resolver, Resource, offline, parse_targets
from clusterctl.session import CLIError

RESOLVER = Resolver([
    Resource("deployments", "Deployment", "apps/v1", True, ("deploy",), ("status", "scale")),
    Resource("pods", "Pod", "v1", True, ("po",)),
    Resource("nodes", "Node", "v1", False, ("no",)),
])


@pytest.mark.parametrize(("text", "want"), [
    pytest.param("deployments", "deployments", id="plural"),
    pytest.param("deployment", "deployments", id="singular"),
    pytest.param("deploy", "deployments", id="short"),
    pytest.param("Deployment", "deployments", id="kind-any-case"),
    pytest.param("deployments.apps", "deployments", id="plural-with-group"),
    pytest.param("deployment.v1.apps", "deployments", id="with-version-and-group"),
    pytest.param("po", "pods", id="core-short"),
    pytest.param("NODES", "nodes", id="upper-case"),
])
def test_resolve(text: str, want: str) -> None:
    assert RESOLVER.resolve(text).name == want


@pytest.mark.parametrize("text", [
    pytest.param("widgets", id="unknown"),
    pytest.param("deployments.batch", id="wrong-group"),
])
def test_unknown_types_are_errors_naming_them(text: str) -> None:
    with pytest.raises(CLIError, match=f'resource type "{text}"'):
        RESOLVER.resolve(text)


def test_refs_and_qualified_names_follow_kubectl() -> None:
    d, p = RESOLVER.resolve("deploy"), RESOLVER.resolve("po")
    assert (d.ref("web"), d.qualified) == ("deployment.apps/web", "deployments.apps")
    assert (p.ref("web"), p.qualified) == ("pod/web", "pods")


def test_offline_table_knows_every_kind_without_a_server() -> None:
    r = offline()
    assert r.resolve("deploy").kind == "Deployment"
    assert r.resolve("cm").name == "configmaps"


def test_offline_short_names_are_the_servers() -> None:
    """One table (api/names.py): what explain and completion accept offline is what the
    server's discovery gives (the offline copy once lacked "ep")."""
    from controlplane.apiserver import resources as server

    offline_names = {r.name: r.short_names for r in offline().resources}
    assert offline_names == {name: r.short_names for name, r in server.RESOURCES.items()}
    assert offline().resolve("ep").name == "endpoints"


@pytest.mark.parametrize(("args", "want"), [
    pytest.param(["pods"], [("pods", None)], id="type"),
    pytest.param(["pods", "a", "b"], [("pods", "a"), ("pods", "b")], id="type-names"),
    pytest.param(["po,deploy"], [("po", None), ("deploy", None)], id="several-types"),
    pytest.param(["po/a", "deploy/b"], [("po", "a"), ("deploy", "b")], id="slash-form"),
])
def test_parse_targets(args: list[str], want: list[tuple[str, str | None]]) -> None:
    assert parse_targets(args) == want


@pytest.mark.parametrize("args", [
    pytest.param([], id="nothing"),
    pytest.param(["pods", "po/a"], id="mixed-forms"),
    pytest.param(["po/"], id="no-name"),
])
def test_parse_targets_errors(args: list[str]) -> None:
    with pytest.raises(CLIError):
        parse_targets(args)
