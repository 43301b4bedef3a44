"""`clusterctl version [--client] [-o yaml|json]`: the client's and the server's."""

from __future__ import annotations

import argparse
import json

from clusterctl import VERSION
from clusterctl.session import Session, emit


def add_arguments(p: argparse.ArgumentParser, verb: str) -> None:
    p.add_argument("--client", action="store_true", help="the client version only")
    p.add_argument("-o", "--output", choices=("yaml", "json"), default=None)


def run(args: argparse.Namespace) -> int:
    out = {"clientVersion": {"gitVersion": VERSION}}
    if not args.client:
        s = Session(args)
        reply = s.client().discovery()
        out["serverVersion"] = {"gitVersion": reply.server_version}
        s.close()
    if args.output == "json":
        emit(json.dumps(out, indent=2))
    elif args.output == "yaml":
        from api.codec import to_yaml
        emit(to_yaml(out))
    else:
        emit(f"Client Version: {VERSION}")
        if "serverVersion" in out:
            emit(f"Server Version: {out['serverVersion']['gitVersion']}")
    return 0
