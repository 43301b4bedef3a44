"""`logs`, `exec`, `top`: they reach a node agent, which is not installed yet; they say
so clearly (exit 1) instead of failing obscurely."""

from __future__ import annotations

import argparse
import sys


def add_arguments(p: argparse.ArgumentParser, verb: str) -> None:
    p.add_argument("rest", nargs=argparse.REMAINDER)
    if verb == "logs":
        p.add_argument("-f", "--follow", action="store_true")
        p.add_argument("-c", "--container")
    if verb == "exec":
        p.add_argument("-i", "--stdin", action="store_true")
        p.add_argument("-t", "--tty", action="store_true")
        p.add_argument("-c", "--container")


def run(args: argparse.Namespace) -> int:
    sys.stderr.write(f"error: clusterctl {args.verb} is not available until the node agent "
                     "is installed (it serves logs, exec and metrics from each node)\n")
    return 1
