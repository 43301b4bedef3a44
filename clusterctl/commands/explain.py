"""`clusterctl explain TYPE[.field.path]`: the documentation in api.schema, no server.

    "deploy.spec.template" ─► Deployment's schema ─► describe("spec.template") ─► explain
"""

from __future__ import annotations

import argparse

from clusterctl.session import CLIError, emit


def add_arguments(p: argparse.ArgumentParser, verb: str) -> None:
    p.add_argument("target", metavar="TYPE[.FIELD.PATH]")


def run(args: argparse.Namespace) -> int:
    from api import kinds
    from api import schema as s
    from clusterctl.resources import offline
    type_text, _, path = args.target.partition(".")
    resolver = offline()
    res = resolver.find(type_text)
    if res is None:
        raise CLIError(f'the server doesn\'t have a resource type "{type_text}"')
    kind = kinds.lookup(res.api_version, res.kind)
    assert kind is not None
    try:
        _, node = kind.schema.describe(path)
    except KeyError as err:
        raise CLIError(f"{res.kind}.{path}: {err.args[0]}") from None
    text = s.explain(node, path)
    emit(f"KIND:     {res.kind}\nVERSION:  {res.api_version}\n\n{text}")
    return 0
