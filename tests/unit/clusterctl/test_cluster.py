"""`clusterctl cluster`'s pure parts: the plan (names, addresses, flag errors), the subnet
check, the context merge, the state file, the runtime service's config and pod network
(checked by the runtime's own parsers), the busybox image, and the command's errors."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from typing import Any

import pytest

from clusterctl import main
from clusterctl.cluster import context, image, state, up
from runtime.service import config as runtime_config
from runtime.service.cni import config as cni_config


def test_default_plan_names_and_addresses() -> None:
    p = state.plan(name="corral-local", nodes=3, subnet="10.99.0.0/24", directory="/x")
    assert (p.bridge, p.gateway, p.prefix_len) == ("corral-nodes", "10.99.0.1", 24)
    assert (p.api_server, p.registry) == ("10.99.0.1:6443", "10.99.0.1:5000")
    n = p.nodes[1]
    assert (n.name, n.ip, n.netns) == ("node-2", "10.99.0.12", "corral-local-node-2")
    assert (n.pod_subnet, n.cgroup_parent) == ("10.244.2.0/24", "/corral-local-node-2")
    assert n.dir == "/x/nodes/node-2" and n.socket == "/x/nodes/node-2/run/cri.sock"
    assert len({m.pod_bridge for m in p.nodes}) == 3
    assert len({m.veth_host for m in p.nodes} | {m.veth_peer for m in p.nodes}) == 6


def test_other_names_get_their_own_links_within_ifnamsiz() -> None:
    a = state.plan(name="corral-test-0123456789", nodes=50, subnet="10.96.1.0/24",
                   directory="/a")
    b = state.plan(name="corral-test-abcdefabcd", nodes=2, subnet="10.96.2.0/24",
                   directory="/b")
    assert a.bridge != b.bridge != "corral-nodes"
    assert a.nodes[0].veth_host != b.nodes[0].veth_host
    names = [a.bridge] + [x for n in a.nodes for x in (n.veth_host, n.veth_peer,
                                                       n.pod_bridge)]
    assert max(len(x) for x in names) <= 15
    assert a.nodes[-1].ip == "10.96.1.60"


@pytest.mark.parametrize(("kw", "message"), [
    pytest.param({"name": "Bad_Name"}, "--name 'Bad_Name': must be lower-case", id="name"),
    pytest.param({"nodes": 0}, "--nodes: must be between 1 and 50, got 0", id="no-nodes"),
    pytest.param({"nodes": 51}, "--nodes: must be between 1 and 50, got 51", id="too-many"),
    pytest.param({"subnet": "10.99.0.1/24"}, "--subnet '10.99.0.1/24': 10.99.0.1/24 has host "
                 "bits set", id="host-bits"),
    pytest.param({"subnet": "nonsense"}, "--subnet 'nonsense'", id="not-a-subnet"),
    pytest.param({"subnet": "10.99.0.0/29"}, "--subnet 10.99.0.0/29: too small for 3 nodes",
                 id="too-small"),
    pytest.param({"subnet": "10.244.0.0/24"}, "overlaps the pod networks 10.244.0.0/16",
                 id="pod-overlap"),
])
def test_plan_errors_name_the_flag(kw: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"name": "c", "nodes": 3, "subnet": "10.99.0.0/24",
                            "directory": "/d", **kw}
    with pytest.raises(state.PlanError) as err:
        state.plan(**args)
    assert message in str(err.value)


@pytest.mark.parametrize(("addresses", "want"), [
    pytest.param([("lo", "127.0.0.1/8"), ("eth0", "192.0.2.2/24")], [], id="free"),
    pytest.param([("br0", "10.99.0.1/24")], ["10.99.0.1/24 on br0"], id="same"),
    pytest.param([("eth1", "10.0.0.5/8")], ["10.0.0.5/8 on eth1"], id="wider"),
    pytest.param([("x", "garbage")], [], id="unparsable-ignored"),
])
def test_overlapping(addresses: list[tuple[str, str]], want: list[str]) -> None:
    assert state.overlapping("10.99.0.0/24", addresses) == want


ADMIN = {"clusters": [{"name": "corral", "cluster": {"server": "10.99.0.1:6443",
                                                    "certificate-authority-data": "Q0E="}}],
         "users": [{"name": "admin", "user": {"client-certificate-data": "Yw==",
                                              "client-key-data": "aw=="}}],
         "contexts": [{"name": "admin@corral", "context": {"cluster": "corral",
                                                           "user": "admin",
                                                           "namespace": "default"}}]}


def test_context_merge_replaces_ours_keeps_theirs_and_unmerge_takes_ours_out() -> None:
    ours = context.entries(ADMIN, "corral-local")
    assert ours["contexts"] == [{"name": "corral-local", "context": {
        "cluster": "corral-local", "user": "corral-local-admin", "namespace": "default"}}]
    user = {"current-context": "prod", "clusters": [{"name": "prod", "cluster": {}},
                                                    {"name": "corral-local", "cluster": {}}],
            "users": [{"name": "p", "user": {}}],
            "contexts": [{"name": "prod", "context": {"cluster": "prod", "user": "p"}}]}
    merged = context.merge(user, ours)
    assert merged["current-context"] == "corral-local"
    assert [c["name"] for c in merged["clusters"]] == ["prod", "corral-local"]
    assert merged["clusters"][1]["cluster"]["server"] == "10.99.0.1:6443"
    assert user["current-context"] == "prod"  # not changed in place
    back = context.unmerge(merged, "corral-local")
    assert back["current-context"] == ""
    assert [c["name"] for c in back["clusters"]] == ["prod"]
    assert [c["name"] for c in back["users"]] == ["p"]
    other = context.unmerge({**merged, "current-context": "prod"}, "corral-local")
    assert other["current-context"] == "prod"


def test_merge_into_no_config_makes_one() -> None:
    merged = context.merge(None, context.entries(ADMIN, "c"))
    assert merged["kind"] == "Config" and merged["current-context"] == "c"


def test_state_round_trip_and_bad_files(tmp_path: Any) -> None:
    d = str(tmp_path)
    assert state.State.load(d) is None
    st = state.State(name="c", dir=d, bridge="br", netns=["c-node-1"])
    st.processes.append(state.Proc(role="agent", node="node-1", pid=7, start_time=9,
                                   log="/l"))
    st.save()
    back = state.State.load(d)
    assert back == st and back.pids("agent")[0].pid == 7
    with open(os.path.join(d, "state.json"), "w") as f:
        f.write('{"name": "c", "dir": "/d", "unknown": 1}')
    with pytest.raises(ValueError, match=r"state\.json: not a cluster state"):
        state.State.load(d)


def test_runtimed_config_and_pod_network_pass_the_runtimes_own_parsers(tmp_path: Any,
                                                                       ) -> None:
    p = state.plan(name="c", nodes=2, subnet="10.99.0.0/24", directory=str(tmp_path))
    n = p.nodes[1]
    path = os.path.join(str(tmp_path), "runtimed.toml")
    with open(path, "w") as f:
        f.write(up.runtimed_config(p, n))
    cfg = runtime_config.load(path)
    assert cfg.default_registry == "10.99.0.1:5000"
    assert cfg.plain_http() == ["10.99.0.1:5000"]
    assert cfg.sandbox_image == "10.99.0.1:5000/corral/pause:1"
    assert cfg.socket == n.socket
    assert cfg.cni.netns_dir.startswith(n.dir) and cfg.cni.conf_dir.startswith(n.dir)
    net = cni_config.parse_conflist(json.dumps(up.pod_network(p, n)))
    assert [x.type for x in net.plugins] == ["bridge", "portmap"]
    bridge = net.plugins[0].raw
    assert bridge["bridge"] == n.pod_bridge
    assert bridge["ipam"]["ranges"] == [[{"subnet": "10.244.2.0/24"}]]


def test_busybox_image_is_consistent() -> None:
    if not os.path.exists(image.BUSYBOX):
        pytest.skip("busybox-static is not installed")
    manifest, config, layer = image.busybox_image()
    m = json.loads(manifest)
    assert m["config"]["digest"] == "sha256:" + hashlib.sha256(config).hexdigest()
    assert m["layers"][0]["digest"] == "sha256:" + hashlib.sha256(layer).hexdigest()
    diff_id = "sha256:" + hashlib.sha256(gzip.decompress(layer)).hexdigest()
    assert json.loads(config)["rootfs"]["diff_ids"] == [diff_id]


@pytest.mark.parametrize(("argv", "rc", "stream", "text"), [
    pytest.param(["cluster", "up", "--nodes", "0", "--dir", "/nonexistent/x"], 1, "err",
                 "error: cluster up: --nodes: must be between 1 and 50, got 0",
                 id="up-bad-nodes"),
    pytest.param(["cluster", "up", "--name", "UPPER", "--dir", "/nonexistent/x"], 1, "err",
                 "error: cluster up: --name 'UPPER'", id="up-bad-name"),
    pytest.param(["cluster", "down", "--dir", "{tmp}"], 0, "out",
                 "No cluster recorded at {tmp}: nothing to do", id="down-nothing"),
    pytest.param(["cluster"], 1, "err", "error: the following arguments are required",
                 id="no-action"),
])
def test_command(argv: list[str], rc: int, stream: str, text: str, tmp_path: Any,
                 capsys: pytest.CaptureFixture[str]) -> None:
    tmp = str(tmp_path)
    assert main.main([a.replace("{tmp}", tmp) for a in argv]) == rc
    captured = capsys.readouterr()
    assert text.replace("{tmp}", tmp) in (captured.err if stream == "err" else captured.out)


def test_start_node_starts_and_records_the_node_without_waiting_for_it(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """start_node only starts corral-node (the sandbox image is pulled by up() once every
    node is started, each when it serves): nothing waits on the node's socket here."""
    p = state.plan(name="c", nodes=2, subnet="10.99.0.0/24", directory=str(tmp_path))
    st = state.State(name="c", dir=str(tmp_path))
    calls: list[tuple[str, Any]] = []
    monkeypatch.setattr(up, "node_credentials",
                        lambda n, *, controlplane_dir: calls.append(("cert", n.name)) or "k")
    monkeypatch.setattr(up, "spawn", lambda argv, **kw: calls.append(("spawn", argv)) or
                        state.Proc(pid=4242, start_time=1, role=kw["role"], node=kw["node"],
                                   log=kw["log"]))
    monkeypatch.setattr(up, "pull_sandbox_image",
                        lambda *a, **kw: calls.append(("pull", a[1].name)))
    n = p.nodes[0]
    up.start_node(p, st, n=n, controlplane_dir=str(tmp_path / "cp"))
    assert [c[0] for c in calls] == ["cert", "spawn"]
    argv = calls[1][1]
    assert argv[:2] == ["nsenter", f"--net=/run/netns/{n.netns}"]
    assert "corral-node" in argv[3] and argv[argv.index("--runtime-socket") + 1] == n.socket
    assert [(x.role, x.node, x.pid) for x in st.processes] == [("node", n.name, 4242)]
    assert n.cgroup_parent in st.cgroups
    assert state.State.load(str(tmp_path)) is not None  # recorded before returning
