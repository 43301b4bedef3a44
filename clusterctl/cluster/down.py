"""`cluster down`: undo what DIR/state.json records, in the order that leaves nothing.

    agents (TERM, then KILL) -> runtime services -> whatever they left in the nodes'
    network namespaces and cgroups (shims, containers: KILL) -> mounts under DIR ->
    cgroups -> node netns (their veths go with them) -> bridge -> controlplane, registry,
    etcd -> the context entries -> the files

Every step tolerates what is already gone, so `down` can run again after a failure, and
`up` uses it to roll back.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from typing import TextIO

from clusterctl.cluster import context, system
from clusterctl.cluster.state import State
from clusterctl.cluster.system import NETNS_DIR, sh

# what up makes under DIR (DIR itself goes only if it is empty afterwards)
MADE = ("nodes", "controlplane", "etcd", "registry", "logs", "config", "state.json",
        "state.json.tmp")


def _netns_inode(name: str) -> int | None:
    try:
        st = os.stat(os.path.join(NETNS_DIR, name))
        nsfs = os.stat("/proc/self/ns/net").st_dev
    except OSError:
        return None
    return st.st_ino if st.st_dev == nsfs else None  # a mounted namespace, not a stub


def pids_in_netns(inodes: set[int]) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            link = os.readlink(f"/proc/{name}/ns/net")
        except OSError:
            continue
        if link.startswith("net:[") and int(link[5:-1]) in inodes:
            found.append(int(name))
    return found


def teardown(st: State, *, out: TextIO) -> list[str]:
    """Remove everything ST records; returns what could not be removed."""
    problems: list[str] = []
    for role in ("node", "agent", "runtimed"):
        for proc in st.pids(role):
            system.stop(proc, grace=10)
    inodes = {i for i in (_netns_inode(n) for n in st.netns) if i is not None}
    for _ in range(3):  # shims, sandboxes, containers; a dying shim may fork no more
        left = set(system.pids_matching(needles=[], cgroups=st.cgroups))
        left |= set(pids_in_netns(inodes))
        left.discard(os.getpid())
        if not left:
            break
        system.kill_all(sorted(left))
    system.unmount_under(st.dir)
    for cg in st.cgroups:
        problems += [f"cgroup {d}: not empty" for d in system.remove_cgroup(cg)]
    for ns in st.netns:
        if system.netns_exists(ns):
            sh("ip", "netns", "del", ns, check=False)
        if system.netns_exists(ns):
            problems.append(f"network namespace {ns}: could not be removed")
    for veth in st.veths:
        if system.link_exists(veth):
            sh("ip", "link", "del", veth, check=False)
    if st.bridge and system.link_exists(st.bridge):
        sh("ip", "link", "del", st.bridge, check=False)
        if system.link_exists(st.bridge):
            problems.append(f"bridge {st.bridge}: could not be removed")
    for role in ("controlplane", "registry", "etcd"):
        for proc in st.pids(role):
            system.stop(proc, grace=10)
    for proc in st.processes:
        if system.alive(proc):
            problems.append(f"{proc.role} {proc.node} (pid {proc.pid}): still running")
    if st.context_file:
        try:
            _remove_context(st.context_file, st.context)
        except (OSError, ValueError) as err:
            problems.append(f"context {st.context} in {st.context_file}: {err}")
    if problems:  # keep state.json so that another `down` can try again
        for p in problems:
            out.write(f"warning: {p}\n")
        return problems
    for name in MADE:
        path = os.path.join(st.dir, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
    with contextlib.suppress(OSError):
        os.rmdir(st.dir)
    return problems


def _remove_context(path: str, name: str) -> None:
    import yaml

    from clusterctl.commands.config import save
    try:
        with open(path) as f:
            doc = yaml.safe_load(f)
    except FileNotFoundError:
        return
    if isinstance(doc, dict):
        save(path, context.unmerge(doc, name))


def down(directory: str, *, out: TextIO) -> int:
    st = State.load(directory)
    if st is None:
        out.write(f"No cluster recorded at {directory}: nothing to do\n")
        return 0
    problems = teardown(st, out=out)
    if problems:
        out.write(f"Cluster {st.name}: {len(problems)} thing(s) left; run "
                  "`clusterctl cluster down` again\n")
        return 1
    out.write(f"Cluster {st.name} is down: processes, namespaces, links, mounts, cgroups "
              "and files removed\n")
    return 0
