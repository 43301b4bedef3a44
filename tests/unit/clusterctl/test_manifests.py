"""Reading -f FILE|DIR|-: every document, with errors naming the file, document, line."""

from __future__ import annotations

import io
import os

import pytest

from clusterctl import manifests
from clusterctl.resources import offline
from clusterctl.session import CLIError

CM = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n"


def write(path: str, text: str) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    return path


def test_directory_recursion_and_multi_documents(tmp_path: object) -> None:
    root = str(tmp_path)
    write(f"{root}/a.yaml", CM.format(name="a") + "---\n" + CM.format(name="b"))
    write(f"{root}/notes.txt", "not a manifest")
    write(f"{root}/sub/c.json", '{"apiVersion": "v1", "kind": "ConfigMap", '
                                '"metadata": {"name": "c"}}')
    docs, errors = manifests.read([root], recursive=False)
    assert errors == [] and [manifests.object_name(d) for d in docs] == ["a", "b"]
    assert docs[1].where() == f"{root}/a.yaml: document 2 (line 6)"
    docs, errors = manifests.read([root], recursive=True)
    assert [manifests.object_name(d) for d in docs] == ["a", "b", "c"]


def test_stdin() -> None:
    docs, errors = manifests.read(["-"], stdin=io.StringIO(CM.format(name="x")))
    assert errors == [] and docs[0].source == "<stdin>"


def test_every_error_is_collected_and_names_its_file(tmp_path: object) -> None:
    root = str(tmp_path)
    bad_yaml = write(f"{root}/bad.yaml", CM.format(name="a") + "---\nkind: [\n")
    dup = write(f"{root}/dup.yaml", CM.format(name="a") + "---\n" + CM.format(name="b")
                + "  name: again\n")
    docs, errors = manifests.read([bad_yaml, dup, f"{root}/missing.yaml"])
    assert docs == []  # a broken file contributes nothing, not half of itself
    assert len(errors) == 3
    assert errors[0].startswith(f"{bad_yaml}: not valid YAML (line")
    assert errors[1].startswith(f"{dup}: document 2: line 10: duplicate key 'name' (first at line 9)")
    assert errors[2] == f'the path "{root}/missing.yaml" does not exist'


def test_nothing_to_read_is_an_error(tmp_path: object) -> None:
    _, errors = manifests.read([str(tmp_path)], verb="create")
    assert errors == ["no objects passed to create"]


def test_place_fills_in_the_namespace_and_rejects_a_different_explicit_one() -> None:
    from api.codec import decode
    doc = decode(CM.format(name="a") + "  namespace: prod\n", source="f.yaml")[0]
    res, ns, obj = manifests.place(doc, offline(), namespace="default", explicit=False)
    assert (res.name, ns, obj["metadata"]["namespace"]) == ("configmaps", "prod", "prod")
    with pytest.raises(CLIError, match=r'f.yaml: document 1 \(line 1\): the namespace from '
                                       r'the provided object "prod" does not match'):
        manifests.place(doc, offline(), namespace="dev", explicit=True)
    node = decode("apiVersion: v1\nkind: Node\nmetadata: {name: n}\n", source="n.yaml")[0]
    assert manifests.place(node, offline(), namespace="dev", explicit=True)[1] == ""
