"""`clusterctl cluster up [--nodes N] [--dir DIR]` / `cluster down [--dir DIR]`: a local
multi-node cluster on this machine, each node a network namespace of its own
(clusterctl/cluster/ does the work; see its docstring for the flow).
`clusterctl cluster init --data-dir DIR`: a controlplane's PKI and admin.conf before its
first start (clusterctl/cluster/init.py)."""

from __future__ import annotations

import argparse
import os
import sys

from clusterctl.session import CLIError


def default_dir(name: str) -> str:
    return os.path.join(os.path.expanduser("~"), ".corral", "clusters", name)


def add_arguments(p: argparse.ArgumentParser, verb: str) -> None:
    from clusterctl.cluster.state import DEFAULT_NAME, DEFAULT_SUBNET

    sub = p.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    up = sub.add_parser("up", help="start etcd, a controlplane, a registry and N nodes")
    up.add_argument("--nodes", type=int, default=3, help="how many nodes (default 3)")
    up.add_argument("--name", default=DEFAULT_NAME,
                    help=f"the cluster's name: its context, netns and cgroup prefix "
                    f"(default {DEFAULT_NAME})")
    up.add_argument("--dir", help="where its state lives (default ~/.corral/clusters/NAME)")
    up.add_argument("--subnet", default=DEFAULT_SUBNET,
                    help=f"the nodes' network; the bridge takes its first address "
                    f"(default {DEFAULT_SUBNET})")
    up.add_argument("--no-context", action="store_true",
                    help="do not merge the cluster's context into the client config")
    up.add_argument("--node-monitor-grace-period", default="", metavar="DURATION",
                    help="how long a silent node stays Ready (corral-controlplane's "
                    "default: 40s)")
    up.add_argument("--node-eviction-rate", default="", metavar="PER_SECOND",
                    help="nodes whose pods are evicted per second (default: 0.1)")
    up.add_argument("--split-node", action="store_true",
                    help="two processes per node, corral-runtimed and corral-agent "
                    "(default: one corral-node)")
    up.add_argument("--timeout", type=float, default=120,
                    help="seconds to wait for the nodes to be Ready (default 120)")
    down = sub.add_parser("down", help="stop and remove everything `up` made")
    down.add_argument("--name", default=DEFAULT_NAME, help="the cluster's name (for the "
                      "default --dir)")
    down.add_argument("--dir", help="the cluster's dir (default ~/.corral/clusters/NAME)")
    init = sub.add_parser("init", help="make a controlplane's cluster CA, certificates "
                          "and admin.conf before its first start")
    init.add_argument("--data-dir", required=True, help="the controlplane's --data-dir")
    init.add_argument("--listen", default="127.0.0.1:6443",
                      help="the controlplane's --listen, named in admin.conf and the server "
                      "certificate (default 127.0.0.1:6443)")
    init.add_argument("--tls-san", action="append", default=[], metavar="NAME",
                      help="another name or IP for the server certificate (repeatable)")
    init.add_argument("--ca-cert", default="", help="use this CA certificate (PEM) instead "
                      "of making one; refused if DIR has a different CA")
    init.add_argument("--ca-key", default="", help="the --ca-cert's private key (PEM)")


def run(args: argparse.Namespace) -> int:
    from clusterctl.cluster import state, system

    if args.action == "init":
        from clusterctl.cluster.init import InitError, init
        try:
            init(data_dir=args.data_dir, listen=args.listen, tls_sans=args.tls_san,
                 ca_cert=args.ca_cert, ca_key=args.ca_key, out=sys.stdout)
        except (InitError, OSError) as err:
            raise CLIError(f"cluster init: {err}") from None
        return 0
    directory = args.dir or default_dir(args.name)
    try:
        if args.action == "down":
            from clusterctl.cluster.down import down
            return down(os.path.abspath(directory), out=sys.stdout)
        from api.client import config_path
        from clusterctl.cluster.up import up
        plan = state.plan(name=args.name, nodes=args.nodes, subnet=args.subnet,
                          directory=directory,
                          node_monitor_grace_period=args.node_monitor_grace_period,
                          node_eviction_rate=args.node_eviction_rate,
                          split_node=args.split_node)
        up(plan, config_path=None if args.no_context else config_path(args.config),
           timeout=args.timeout, out=sys.stdout)
        return 0
    except (state.PlanError, system.ClusterError, ValueError, OSError,
            RuntimeError) as err:
        raise CLIError(f"cluster {args.action}: {err}") from None
