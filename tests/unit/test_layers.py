"""Import contracts (ARCHITECTURE.md): a lower layer never imports a higher one.

    clusterctl -> api;  controlplane -> api;  agent -> api (runtime only over CRI);
    runtime imports nothing above it; api imports none of the components.
"""

from __future__ import annotations

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGES = ("runtime", "api", "controlplane", "agent", "clusterctl")

# package -> the other top-level packages it may import
ALLOWED = {
    "runtime": set(),
    "api": set(),
    "controlplane": {"api"},
    "agent": {"api"},
    "clusterctl": {"api"},
}


def imports_of(path: str) -> set[str]:
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


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
        wrong = (imports_of(path) & set(PACKAGES)) - ALLOWED[package] - {package}
        if wrong:
            bad[os.path.relpath(path, ROOT)] = sorted(wrong)
    assert not bad, f"layering broken: {bad}"


def test_the_contract_check_sees_a_violation(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "m.py")
    with open(path, "w") as f:
        f.write("import os\nfrom controlplane.storage import keys\nfrom . import x\n")
    assert imports_of(path) == {"os", "controlplane"}
