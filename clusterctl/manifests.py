"""Reading `-f FILE|DIR|-`: every file (directories with -R recursively), every document.

    read(["app/", "-"], recursive=True) -> (documents, errors)

Documents keep where they came from (`app/web.yaml: document 2 (line 14)`) so that every
message names the file and the document. Errors from several files are all collected:
the caller reports every one and applies nothing.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any, TextIO

from clusterctl.session import CLIError

if TYPE_CHECKING:
    from api.codec import Document
    from clusterctl.resources import Resolver, Resource

EXTENSIONS = (".yaml", ".yml", ".json")


def files_of(path: str, *, recursive: bool) -> list[str]:
    """The manifest files PATH names: itself, or a directory's .yaml/.yml/.json files
    (sorted; subdirectories only when RECURSIVE)."""
    if path == "-":
        return ["-"]
    if not os.path.exists(path):
        raise CLIError(f'the path "{path}" does not exist')
    if not os.path.isdir(path):
        return [path]
    out: list[str] = []
    for entry in sorted(os.listdir(path)):
        full = os.path.join(path, entry)
        if os.path.isdir(full):
            if recursive:
                out += files_of(full, recursive=True)
        elif entry.endswith(EXTENSIONS):
            out.append(full)
    return out


def read(paths: list[str], *, recursive: bool = False, stdin: TextIO | None = None,
         verb: str = "apply") -> tuple[list[Document], list[str]]:
    """Every document in PATHS, and every error (each naming its file and document)."""
    from api import codec
    docs: list[Document] = []
    errors: list[str] = []
    for path in paths:
        try:
            files = files_of(path, recursive=recursive)
        except CLIError as err:
            errors.append(str(err))
            continue
        for name in files:
            try:
                if name == "-":
                    text, source = (stdin or sys.stdin).read(), "<stdin>"
                else:
                    with open(name, encoding="utf-8") as f:
                        text, source = f.read(), name
            except (OSError, UnicodeDecodeError) as err:
                errors.append(f"{name}: {getattr(err, 'strerror', None) or err}")
                continue
            try:
                docs += codec.decode(text, source=source)
            except codec.DecodeError as err:
                errors.append(str(err))
    if not docs and not errors:
        errors.append(f"no objects passed to {verb}" if paths else "must specify -f")
    return docs, errors


def object_name(doc: Document) -> str:
    meta = doc.obj.get("metadata")
    return str(meta.get("name") or "") if isinstance(meta, dict) else ""


def place(doc: Document, resolver: Resolver, *, namespace: str,
          explicit: bool) -> tuple[Resource, str, dict[str, Any]]:
    """The resource, namespace and object (namespace filled in) DOC is written for.
    A namespace in the file that disagrees with an explicit -n is an error, as in kubectl."""
    obj = doc.obj
    try:
        res = resolver.for_kind(str(obj.get("apiVersion", "")), str(obj.get("kind", "")))
    except CLIError as err:
        raise CLIError(f"{doc.where()}: {err}") from None
    raw = obj.get("metadata")
    meta: dict[str, Any] = raw if isinstance(raw, dict) else {}
    if not res.namespaced:
        return res, "", obj
    ns = str(meta.get("namespace") or "")
    if ns and explicit and ns != namespace:
        raise CLIError(f'{doc.where()}: the namespace from the provided object "{ns}" does '
                       f'not match the namespace "{namespace}". You must pass '
                       f"'--namespace={ns}' to perform this operation.")
    ns = ns or namespace
    return res, ns, {**obj, "metadata": {**meta, "namespace": ns}}
