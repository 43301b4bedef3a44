"""`clusterctl logs [-f] [-p] [-c C] [--tail N] [--since D] [--timestamps] POD`: a
container's log, relayed by the controlplane from the pod's node (kubectl logs).

    POD ──► Client.pod_logs ──► NodeProxy.PodLogs ──► the node's agent ──► stdout, as it
                                                                           comes (-f: until
                                                                           the container
                                                                           exits or Ctrl-C)
"""

from __future__ import annotations

import argparse
import re
import sys

from clusterctl.session import CLIError, Session

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s)")
_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_duration(text: str) -> int:
    """Go's duration syntax as kubectl's --since takes it ("90s", "5m", "1h30m") in whole
    seconds, at least 1 (Kubernetes rounds a shorter one up)."""
    pos, total = 0, 0.0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT[m.group(2)]
        pos = m.end()
    if not text or pos != len(text):
        raise CLIError(f'--since: invalid duration "{text}" (want e.g. 30s, 5m, 1h30m)')
    if total <= 0:
        raise CLIError(f'--since: must be > 0, got "{text}"')
    return max(1, int(-(-total // 1)))


def pod_name(text: str) -> str:
    """NAME or pod/NAME (pods/NAME, po/NAME)."""
    kind, slash, name = text.partition("/")
    if not slash:
        return text
    if kind not in ("pod", "pods", "po") or not name:
        raise CLIError(f'{text}: only pods have logs here (want POD or pod/POD)')
    return name


def add_arguments(p: argparse.ArgumentParser, verb: str) -> None:
    p.add_argument("pod", metavar="POD")
    p.add_argument("-f", "--follow", action="store_true",
                   help="stream the log until the container exits or Ctrl-C")
    p.add_argument("-p", "--previous", action="store_true",
                   help="the log of the previous, terminated instance of the container")
    p.add_argument("-c", "--container", default="", help="the container (default: the "
                   "pod's only one, or its kubectl.kubernetes.io/default-container)")
    p.add_argument("--tail", type=int, default=-1, help="the last N lines (-1: all)")
    p.add_argument("--since", default="", help="only lines newer than this (5s, 2m, 3h)")
    p.add_argument("--timestamps", action="store_true", help="prefix each line with its "
                   "RFC 3339 timestamp")
    p.add_argument("--limit-bytes", type=int, default=None, help="at most this many bytes")


def run(args: argparse.Namespace) -> int:
    if args.tail < -1:
        raise CLIError(f"--tail: must be >= -1, got {args.tail}")
    if args.limit_bytes is not None and args.limit_bytes <= 0:
        raise CLIError(f"--limit-bytes: must be > 0, got {args.limit_bytes}")
    since = parse_duration(args.since) if args.since else None
    name = pod_name(args.pod)
    s = Session(args)
    out = sys.stdout.buffer
    stream = s.client().pod_logs(
        name, namespace=s.namespace, container=args.container, follow=args.follow,
        previous=args.previous, tail_lines=None if args.tail < 0 else args.tail,
        since_seconds=since, timestamps=args.timestamps, limit_bytes=args.limit_bytes)
    try:
        for data in stream:
            out.write(data)
            out.flush()
    finally:
        stream.close()  # cancels the stream (Ctrl-C, a closed pipe)
        s.close()
    return 0
