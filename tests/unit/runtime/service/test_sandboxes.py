"""The sandbox lifecycle with fake network, namespace holder and pause runners: the state
table, undo on failure, name reservation, restart from the records, tenancy, and when a
pause container is run (only for a shared PID namespace, or if the daemon keeps them)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from runtime.service import sandboxes as S
from runtime.service.cni import config as cni_config
from runtime.service.nsholder import PinError, Pinned
from runtime.service.sandboxes import TRANSITIONS, SandboxManager, SandboxSpec, SandboxState


class FakeNetwork:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.attached: set[str] = set()
        self.calls: list[str] = []

    def setup(self, sandbox_id: str, *, port_mappings: Sequence[Mapping[str, Any]]
              ) -> tuple[str, list[str]]:
        self.calls.append("setup")
        if self.fail:
            raise S.FailedPrecondition("network: no CNI config")
        self.attached.add(sandbox_id)
        return f"/run/netns/{sandbox_id[:8]}", ["10.0.0.2"]

    def teardown(self, sandbox_id: str, netns: str) -> None:
        self.calls.append("teardown")
        self.attached.discard(sandbox_id)

    def ready(self) -> tuple[bool, str]:
        return True, ""


class FakePause:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.running: dict[str, int] = {}
        self.made: set[str] = set()

    def start(self, sandbox: S.Sandbox) -> int:
        self.made.add(sandbox.id)
        if self.fail:
            raise RuntimeError("pause: runtime create failed")
        self.running[sandbox.id] = 4242
        return 4242

    def pid(self, sandbox: S.Sandbox) -> int:
        return self.running.get(sandbox.id, 0)

    def stop(self, sandbox: S.Sandbox) -> None:
        self.running.pop(sandbox.id, None)

    def remove(self, sandbox: S.Sandbox) -> None:
        self.running.pop(sandbox.id, None)
        self.made.discard(sandbox.id)


class FakeHolder:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.live: set[str] = set()  # shm paths still mounted
        self.files: set[str] = set()  # sandboxes with files
        self.pins: list[tuple[tuple[str, ...], str]] = []  # (kinds, hostname) per pin

    def pin(self, sandbox_id: str, *, hostname: str, kinds: tuple[str, ...]) -> Pinned:
        self.pins.append((kinds, hostname))
        if self.fail:
            raise PinError(f"Sandbox {sandbox_id}: namespaces: Operation not permitted")
        d = f"/pins/{sandbox_id}"
        self.files.add(sandbox_id)
        self.live.add(d + "/shm")
        return Pinned(tuple((k, f"{d}/{k}") for k in kinds), d + "/shm")

    def alive(self, pinned: Pinned) -> bool:
        return pinned.shm in self.live

    def unpin(self, sandbox_id: str) -> None:
        self.live.discard(f"/pins/{sandbox_id}/shm")

    def remove(self, sandbox_id: str) -> None:
        self.unpin(sandbox_id)
        self.files.discard(sandbox_id)


def spec(name: str = "web", **kw: Any) -> SandboxSpec:
    return SandboxSpec(name=name, uid="u1", namespace="default", **kw)


def manager(tmp_path: Any, **kw: Any) -> tuple[SandboxManager, FakeNetwork, FakePause]:
    m, net, pause, _ = manager4(tmp_path, **kw)
    return m, net, pause


def manager4(tmp_path: Any, **kw: Any
             ) -> tuple[SandboxManager, FakeNetwork, FakePause, FakeHolder]:
    """A manager on fakes; pause containers kept (drop_infra=False) unless DROP_INFRA."""
    net, pause = FakeNetwork(kw.pop("net_fail", False)), FakePause(kw.pop("pause_fail", False))
    holder = FakeHolder(kw.pop("pin_fail", False))
    m = SandboxManager(str(tmp_path), network=net, pause=pause, holder=holder,
                       drop_infra=kw.pop("drop_infra", False))
    return m, net, pause, holder


@pytest.mark.parametrize(("old", "new"), [
    pytest.param(o, n, id=f"{o.value}-{n.value}") for o in SandboxState for n in SandboxState
])
def test_transition_table(old: SandboxState, new: SandboxState) -> None:
    if new == old or new in TRANSITIONS[old]:
        S.check_transition("s", old, new)
    else:
        with pytest.raises(S.FailedPrecondition, match=f"cannot go from {old.value}"):
            S.check_transition("s", old, new)


def test_run_stop_remove(tmp_path: Any) -> None:
    m, net, pause = manager(tmp_path)
    sb = m.run("k8s.io", spec())
    assert sb.state is SandboxState.READY and sb.ips == ("10.0.0.2",) and sb.pause_pid == 4242
    assert dict(sb.join_namespaces())["ipc"] == "/proc/4242/ns/ipc"
    assert m.get("k8s.io", sb.id[:10]).id == sb.id  # a unique prefix finds it
    assert [s.id for s in m.list("k8s.io")] == [sb.id]
    assert m.list("default") == []  # tenancy
    with pytest.raises(S.NotFound):
        m.get("default", sb.id)
    stopped = m.stop("k8s.io", sb.id)
    assert stopped.state is SandboxState.NOTREADY and not net.attached and not pause.running
    assert m.stop("k8s.io", sb.id).state is SandboxState.NOTREADY  # idempotent
    m.remove("k8s.io", sb.id)
    assert m.list("k8s.io") == [] and not pause.made
    with pytest.raises(S.NotFound, match=f"Sandbox {sb.id}"):
        m.remove("k8s.io", sb.id)


def test_records_survive_a_restart(tmp_path: Any) -> None:
    m, net, pause = manager(tmp_path)
    sb = m.run("k8s.io", spec())
    again = SandboxManager(str(tmp_path), network=net, pause=pause, holder=m.holder,
                           drop_infra=False)
    assert again.get("k8s.io", sb.id).state is SandboxState.READY
    pause.running.clear()  # the pause container died while the daemon was away
    assert again.get("k8s.io", sb.id).state is SandboxState.NOTREADY


@pytest.mark.parametrize(("kw", "error", "calls"), [
    pytest.param({"net_fail": True}, S.FailedPrecondition, ["setup", "teardown"],
                 id="network-fails"),
    pytest.param({"pause_fail": True}, RuntimeError, ["setup", "teardown"], id="pause-fails"),
])
def test_failure_undoes_everything(tmp_path: Any, kw: dict[str, bool], error: type[Exception],
                                   calls: list[str]) -> None:
    m, net, pause = manager(tmp_path, **kw)
    with pytest.raises(error):
        m.run("k8s.io", spec())
    assert net.calls == calls and not net.attached and not pause.made
    assert m.list("k8s.io") == []


def test_names_are_unique_per_tenant(tmp_path: Any) -> None:
    m, _, _ = manager(tmp_path)
    first = m.run("k8s.io", spec())
    with pytest.raises(S.AlreadyExists, match=f"reserved for sandbox {first.id}"):
        m.run("k8s.io", spec())
    m.run("k8s.io", spec(attempt=1))  # a new attempt is a new name
    m.run("other", spec())  # another tenant


@pytest.mark.parametrize(("bad", "field"), [
    pytest.param({"name": ""}, "metadata.name", id="no-name"),
    pytest.param({"uid": ""}, "metadata.uid", id="no-uid"),
    pytest.param({"log_directory": "rel"}, "log_directory", id="relative-log-dir"),
    pytest.param({"cgroup_parent": "x"}, "linux.cgroup_parent", id="relative-cgroup"),
])
def test_invalid_specs(tmp_path: Any, bad: dict[str, str], field: str) -> None:
    m, net, _ = manager(tmp_path)
    base = {"name": "web", "uid": "u1", "namespace": "default", **bad}
    with pytest.raises(S.InvalidArgument, match=field):
        m.run("k8s.io", SandboxSpec(**base))  # type: ignore[arg-type]
    assert net.calls == []


def test_standalone_has_no_network_or_pause(tmp_path: Any) -> None:
    m, net, pause = manager(tmp_path)
    sb = m.run("default", spec(standalone=True))
    assert sb.state is SandboxState.READY and sb.join_namespaces() == ()
    assert net.calls == [] and not pause.made
    m.remove("default", sb.id)


@pytest.mark.parametrize(("drop_infra", "kw", "pause_wanted"), [
    pytest.param(True, {}, False, id="dropped-by-default"),
    pytest.param(True, {"share_pid": True}, True, id="shared-pid-needs-an-init"),
    pytest.param(False, {}, True, id="kept-by-config"),
    pytest.param(False, {"standalone": True}, False, id="standalone-never"),
    pytest.param(True, {"standalone": True}, False, id="standalone-never-dropped"),
])
def test_needs_pause(drop_infra: bool, kw: dict[str, bool], pause_wanted: bool) -> None:
    assert S.needs_pause(spec("web", **kw), drop_infra=drop_infra) is pause_wanted


def test_without_pause_namespaces_are_pinned(tmp_path: Any) -> None:
    m, net, pause, holder = manager4(tmp_path, drop_infra=True)
    sb = m.run("k8s.io", spec(hostname="web-0"))
    assert sb.state is SandboxState.READY and sb.pause_pid == 0 and not pause.made
    assert holder.pins == [(("ipc", "uts"), "web-0")]
    assert dict(sb.join_namespaces()) == {
        "network": f"/run/netns/{sb.id[:8]}", "ipc": f"/pins/{sb.id}/ipc",
        "uts": f"/pins/{sb.id}/uts"}
    assert sb.shm == f"/pins/{sb.id}/shm"
    # a restarted daemon reads the pins from the record, and READY from them
    again = SandboxManager(str(tmp_path), network=net, pause=pause, holder=holder)
    assert again.get("k8s.io", sb.id).namespaces == sb.namespaces
    assert [s.state for s in again.list("k8s.io")] == [SandboxState.READY]
    holder.live.clear()  # a pin went (someone unmounted it)
    assert again.get("k8s.io", sb.id).state is SandboxState.NOTREADY
    assert [s.state for s in again.list("k8s.io")] == [SandboxState.NOTREADY]
    stopped = again.stop("k8s.io", sb.id)
    assert stopped.state is SandboxState.NOTREADY and not net.attached
    assert net.calls == ["setup", "teardown"] and holder.files == {sb.id}  # stop keeps files
    again.remove("k8s.io", sb.id)
    assert holder.files == set() and again.list("k8s.io") == [] and not pause.made


def test_kept_pause_still_gets_a_pod_shm(tmp_path: Any) -> None:
    m, _, pause, holder = manager4(tmp_path, drop_infra=True)
    sb = m.run("k8s.io", spec(share_pid=True))
    assert sb.pause_pid == 4242 and holder.pins == [((), "")]
    assert dict(sb.join_namespaces())["pid"] == "/proc/4242/ns/pid"
    assert sb.shm and sb.namespaces == ()
    pause.running.clear()
    assert m.get("k8s.io", sb.id).state is SandboxState.NOTREADY  # READY from the pause
    m.remove("k8s.io", sb.id)
    assert holder.files == set() and not pause.made


def test_host_network_pins_keep_the_daemons_hostname(tmp_path: Any) -> None:
    m, net, _, holder = manager4(tmp_path, drop_infra=True)
    sb = m.run("k8s.io", spec(hostname="web-0", host_network=True))
    assert holder.pins == [(("ipc", "uts"), "")] and net.calls == []
    assert dict(sb.join_namespaces())["network"] == "/proc/1/ns/net"


@pytest.mark.parametrize(("kw", "error", "net_calls"), [
    pytest.param({"pin_fail": True}, PinError, ["setup", "teardown"], id="pin-fails"),
    pytest.param({"net_fail": True}, S.FailedPrecondition, ["setup", "teardown"],
                 id="network-fails"),
])
def test_pause_less_failure_undoes_everything(tmp_path: Any, kw: dict[str, bool],
                                              error: type[Exception],
                                              net_calls: list[str]) -> None:
    m, net, pause, holder = manager4(tmp_path, drop_infra=True, **kw)
    with pytest.raises(error):
        m.run("k8s.io", spec())
    assert net.calls == net_calls and not net.attached and not pause.made
    assert holder.files == set() and holder.live == set()
    assert m.list("k8s.io") == []
    assert sorted(p.name for p in (tmp_path / "sandboxes" / "k8s.io").iterdir()) == []


def test_hostname_too_long_is_invalid(tmp_path: Any) -> None:
    m, net, _, holder = manager4(tmp_path, drop_infra=True)
    with pytest.raises(S.InvalidArgument, match="Sandbox default/web: hostname: longer than 64"):
        m.run("k8s.io", spec(hostname="h" * 65))
    assert net.calls == [] and holder.pins == []


def test_run_writes_the_record_twice(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """CREATED and READY reach the disk; the steps between (netns, pins) are kept in
    memory only, yet a restarted daemon reads everything back."""
    m, net, pause, holder = manager4(tmp_path, drop_infra=True)
    written: list[str] = []
    real = S.json.dumps

    def dumps(obj: Any, **kw: Any) -> str:
        if isinstance(obj, dict) and "state" in obj and "id" in obj:  # a sandbox record
            written.append(obj["state"])
        return real(obj, **kw)
    monkeypatch.setattr(S.json, "dumps", dumps)
    sb = m.run("k8s.io", spec())
    assert written == ["created", "ready"]
    again = SandboxManager(str(tmp_path), network=net, pause=pause, holder=holder)
    back = again.get("k8s.io", sb.id)
    assert back == sb and back.netns and back.namespaces and back.shm


def conflist(path: Any, name: str) -> None:
    path.write_text(json.dumps({"cniVersion": "1.0.0", "name": name,
                                "plugins": [{"type": "loopback"}]}))


def test_cni_network_parses_its_conflist_once_per_change(tmp_path: Any,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    conf_dir = tmp_path / "cni"
    conf_dir.mkdir()
    net = S.CNINetwork(conf_dir=str(conf_dir), bin_dirs=[], cache_dir=str(tmp_path / "c"))
    assert net.ready() == (False, f"network: no CNI network configuration in {conf_dir}")
    loads: list[str] = []
    real = cni_config.load_file
    monkeypatch.setattr(cni_config, "load_file", lambda p: loads.append(p) or real(p))
    conflist(conf_dir / "10-a.conflist", "a")
    assert net._network().name == "a" and net._network() is net._network()
    assert net.ready() == (True, "") and len(loads) == 1
    conflist(conf_dir / "10-a.conflist.tmp", "b")  # replaced by rename, as writers do
    (conf_dir / "10-a.conflist.tmp").rename(conf_dir / "10-a.conflist")
    assert net._network().name == "b" and len(loads) == 2
    conflist(conf_dir / "05-c.conflist", "c")  # a new first file
    assert net._network().name == "c"
    (conf_dir / "05-c.conflist").unlink()
    (conf_dir / "10-a.conflist").unlink()
    assert net.ready()[0] is False
