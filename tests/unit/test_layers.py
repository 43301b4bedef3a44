"""Import contracts (ARCHITECTURE.md): a lower layer never imports a higher one.

    clusterctl -> api;  controlplane -> api;  agent -> api (runtime only over CRI);
    runtime imports nothing above it; api imports none of the components;
    nodehost (corral-node) -> agent, runtime, api: the one package that may import both
    the agent and the runtime service, to host them in one process.

"Only over CRI": the agent may import the CRI wire package (`runtime.service.cri`'s
client and generated stubs, which import nothing else of runtime: checked below), as
kubelet imports cri-api; never the daemon's internals.
"""

from __future__ import annotations

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGES = ("runtime", "api", "controlplane", "agent", "clusterctl", "nodehost")

# package -> the other top-level packages it may import
ALLOWED = {
    "runtime": set(),
    "api": set(),
    "controlplane": {"api"},
    "agent": {"api"},
    "clusterctl": {"api"},
    "nodehost": {"agent", "runtime", "api"},
}


# modules of another layer a package may still import, by full name
WIRE = {"agent": {"runtime.service.cri.client", "runtime.service.cri.api_pb2",
                  "runtime.service.cri.api_pb2_grpc", "runtime.service.cri.stream",
                  "runtime.service.cri"}}


def full_imports_of(path: str) -> set[str]:
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def imports_of(path: str, package: str = "") -> set[str]:
    """Top-level packages PATH imports, leaving out the wire modules PACKAGE may use."""
    wire = WIRE.get(package, set())
    out = set()
    for name in full_imports_of(path):
        if name not in wire:
            out.add(name.split(".")[0])
    return out


def modules(package: str) -> list[str]:
    out = []
    for dirpath, _, files in os.walk(os.path.join(ROOT, package)):
        out += [os.path.join(dirpath, f) for f in files if f.endswith(".py")]
    return out


@pytest.mark.parametrize("package", [p for p in PACKAGES if os.path.isdir(os.path.join(ROOT, p))])
def test_package_imports_only_what_its_layer_may(package: str) -> None:
    files = modules(package)
    assert files, f"{package} has no modules"
    bad = {}
    for path in files:
        wrong = (imports_of(path, package) & set(PACKAGES)) - ALLOWED[package] - {package}
        if wrong:
            bad[os.path.relpath(path, ROOT)] = sorted(wrong)
    assert not bad, f"layering broken: {bad}"


def test_the_contract_check_sees_a_violation(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "m.py")
    with open(path, "w") as f:
        f.write("import os\nfrom controlplane.storage import keys\nfrom . import x\n")
    assert imports_of(path) == {"os", "controlplane"}


def test_only_nodehost_may_import_both_the_agent_and_the_runtime() -> None:
    both = {p for p, allowed in ALLOWED.items() if {"agent", "runtime"} <= allowed}
    assert both == {"nodehost"}
    assert not (ALLOWED["agent"] | ALLOWED["runtime"]) & {"nodehost"}
    got = set()
    for path in modules("nodehost"):
        got |= imports_of(path) & set(PACKAGES)
    assert {"agent", "runtime"} <= got, "nodehost no longer hosts both: drop its exception"


def test_the_cri_wire_package_imports_nothing_else_of_runtime() -> None:
    for mod in ("client", "api_pb2", "api_pb2_grpc", "stream", "__init__"):
        path = os.path.join(ROOT, "runtime", "service", "cri", f"{mod}.py")
        inner = {n for n in full_imports_of(path) if n.startswith("runtime")}
        assert inner <= WIRE["agent"], f"{path} imports {sorted(inner - WIRE['agent'])}"
