"""The CRI servicer's List calls (filters, messages built directly, reused while their
source is unchanged), the error map of cri/server.py, and CRI's stdin/stdin_once/tty as
ContainerConfig fields (process.terminal; no private annotation in config.json)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc  # type: ignore[import-untyped]
import pytest

from runtime.service import bundle as B
from runtime.service import sandboxes as S
from runtime.service.containers import Container
from runtime.service.containers import NotFound as ContainerNotFound
from runtime.service.cri import api_pb2 as pb
from runtime.service.cri import runtime_servicer as R
from runtime.service.cri import server
from runtime.service.cri.service import ContainerView, NotFound
from runtime.service.tasks import TaskInfo, TaskState, stdio_flags

SB = ["a1" + "0" * 62, "b2" + "0" * 62]


def sandbox(i: int, *, state: S.SandboxState = S.SandboxState.READY) -> S.Sandbox:
    return S.Sandbox(id=SB[i], tenant="k8s.io", state=state, created_at_ns=10 + i,
                     spec=S.SandboxSpec(name=f"pod-{i}", uid=f"u{i}", namespace="default",
                                        labels={"app": f"a{i}", "tier": "web"},
                                        annotations={"note": str(i)}, runtime_handler="rc"))


def view(i: int, pod: int, *, state: TaskState | None = TaskState.RUNNING,
         labels: dict[str, str] | None = None) -> ContainerView:
    cid = f"{i:02d}" + "c" * 62
    c = Container(namespace="k8s.io", id=cid, labels=labels or {"n": str(i)},
                  created_at_ns=100 + i,
                  spec={"cri": {"sandbox_id": SB[pod], "name": f"c{i}", "attempt": 1,
                                "annotations": {"h": "x"}, "log_path": "l", "image": "bb",
                                "image_id": "sha256:1"}})
    task = None if state is None else TaskInfo("k8s.io", cid, state, 1, "corral-runc", "/l",
                                               None)
    return ContainerView(c, task)


class Fakes:
    """Service.list and SandboxManager.list over lists a test changes."""

    def __init__(self) -> None:
        self.views = [view(0, 0), view(1, 0, state=TaskState.STOPPED, labels={"n": "1"}),
                      view(2, 1, state=None)]
        self.sbs = [sandbox(0), sandbox(1, state=S.SandboxState.NOTREADY)]

    def list(self, tenant: str) -> list[Any]:
        assert tenant == "k8s.io"
        return self.views


class Sandboxes:
    def __init__(self, fakes: Fakes) -> None:
        self.fakes = fakes

    def list(self, tenant: str) -> list[S.Sandbox]:
        return self.fakes.sbs


class Context:
    def __init__(self, metadata: tuple[tuple[str, str], ...] = ()) -> None:
        self.metadata = metadata

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self.metadata


@pytest.fixture
def fakes() -> Fakes:
    return Fakes()


@pytest.fixture
def servicer(fakes: Fakes) -> R.RuntimeServicer:
    return R.RuntimeServicer(fakes, Sandboxes(fakes), None,  # type: ignore[arg-type]
                             tenant_of=server.tenant_of, config_info={})


def list_containers(rs: R.RuntimeServicer, **f: Any) -> list[pb.Container]:
    req = pb.ListContainersRequest(filter=pb.ContainerFilter(**f))
    return list(asyncio.run(rs.ListContainers(req, Context())).containers)


def list_sandboxes(rs: R.RuntimeServicer, **f: Any) -> list[pb.PodSandbox]:
    req = pb.ListPodSandboxRequest(filter=pb.PodSandboxFilter(**f))
    return list(asyncio.run(rs.ListPodSandbox(req, Context())).items)


@pytest.mark.parametrize("flt,names", [
    pytest.param({}, ["c0", "c1", "c2"], id="all"),
    pytest.param({"id": "01"}, ["c1"], id="id-prefix"),
    pytest.param({"pod_sandbox_id": "b2"}, ["c2"], id="sandbox-prefix"),
    pytest.param({"state": pb.ContainerStateValue(state=pb.CONTAINER_EXITED)}, ["c1"],
                 id="state-exited"),
    pytest.param({"state": pb.ContainerStateValue(state=pb.CONTAINER_UNKNOWN)}, ["c2"],
                 id="state-unknown-no-task"),
    pytest.param({"label_selector": {"n": "0"}}, ["c0"], id="labels"),
    pytest.param({"label_selector": {"n": "0", "x": "y"}}, [], id="labels-all-must-match"),
])
def test_list_containers_filters(servicer: R.RuntimeServicer, flt: dict[str, Any],
                                 names: list[str]) -> None:
    assert [c.metadata.name for c in list_containers(servicer, **flt)] == names


@pytest.mark.parametrize("flt,names", [
    pytest.param({}, ["pod-0", "pod-1"], id="all"),
    pytest.param({"id": "b2"}, ["pod-1"], id="id-prefix"),
    pytest.param({"state": pb.PodSandboxStateValue(state=pb.SANDBOX_READY)}, ["pod-0"],
                 id="ready"),
    pytest.param({"label_selector": {"app": "a1"}}, ["pod-1"], id="labels"),
    pytest.param({"label_selector": {"tier": "db"}}, [], id="labels-none"),
])
def test_list_pod_sandbox_filters(servicer: R.RuntimeServicer, flt: dict[str, Any],
                                  names: list[str]) -> None:
    assert [s.metadata.name for s in list_sandboxes(servicer, **flt)] == names


def test_list_messages_carry_every_field(servicer: R.RuntimeServicer) -> None:
    c = list_containers(servicer, id="00")[0]
    assert c == pb.Container(
        id="00" + "c" * 62, pod_sandbox_id=SB[0], metadata=pb.ContainerMetadata(
            name="c0", attempt=1), image=pb.ImageSpec(image="bb"), image_ref="sha256:1",
        image_id="sha256:1", state=pb.CONTAINER_RUNNING, created_at=100, labels={"n": "0"},
        annotations={"h": "x"})
    s = list_sandboxes(servicer, id="a1")[0]
    assert s == pb.PodSandbox(
        id=SB[0], metadata=pb.PodSandboxMetadata(name="pod-0", uid="u0", namespace="default"),
        state=pb.SANDBOX_READY, created_at=10, labels={"app": "a0", "tier": "web"},
        annotations={"note": "0"}, runtime_handler="rc")


def test_list_reflects_changes_of_reused_messages(servicer: R.RuntimeServicer,
                                                  fakes: Fakes) -> None:
    list_containers(servicer)
    list_sandboxes(servicer)
    v = fakes.views[0]
    assert v.task is not None
    # a task that stopped, a record updated (the store hands out a new object), a sandbox
    # gone not ready
    fakes.views[0] = ContainerView(v.record, replace(v.task, state=TaskState.STOPPED))
    fakes.views[1] = ContainerView(replace(fakes.views[1].record, labels={"n": "new"}),
                                   fakes.views[1].task)
    fakes.sbs[0] = replace(fakes.sbs[0], state=S.SandboxState.NOTREADY)
    got = list_containers(servicer)
    assert [c.state for c in got] == [pb.CONTAINER_EXITED, pb.CONTAINER_EXITED,
                                      pb.CONTAINER_UNKNOWN]
    assert dict(got[1].labels) == {"n": "new"}
    assert [s.state for s in list_sandboxes(servicer)] == [pb.SANDBOX_NOTREADY] * 2
    del fakes.views[0]
    assert [c.metadata.name for c in list_containers(servicer)] == ["c1", "c2"]


def test_a_response_never_shares_the_kept_message(servicer: R.RuntimeServicer) -> None:
    first = list_containers(servicer)[0]
    first.labels["n"] = "changed by a caller"
    assert dict(list_containers(servicer)[0].labels) == {"n": "0"}


# ---- cri/server.py ----------------------------------------------------------------------


@pytest.mark.parametrize("exc,code", [
    pytest.param(NotFound("Container x: not found"), grpc.StatusCode.NOT_FOUND, id="svc"),
    pytest.param(ContainerNotFound("x"), grpc.StatusCode.NOT_FOUND, id="store"),
    pytest.param(B.BundleError("web", "command", "empty"), grpc.StatusCode.INVALID_ARGUMENT,
                 id="bundle"),
    pytest.param(ValueError("v"), grpc.StatusCode.INVALID_ARGUMENT, id="value-error"),
    pytest.param(RuntimeError("r"), grpc.StatusCode.UNKNOWN, id="other"),
])
def test_code_of(exc: BaseException, code: grpc.StatusCode) -> None:
    assert server.code_of(exc) is code
    assert server.code_of(exc) is code  # and again, from the per-class memo


@pytest.mark.parametrize("metadata,tenant", [
    pytest.param((), "k8s.io", id="cri-none"),
    pytest.param((("user-agent", "x"), ("containerd-namespace", "default")), "default",
                 id="ctr"),
    pytest.param((("containerd-namespace", ""),), "k8s.io", id="empty"),
])
def test_tenant_of(metadata: tuple[tuple[str, str], ...], tenant: str) -> None:
    assert server.tenant_of(Context(metadata)) == tenant


# ---- stdin, stdin_once, tty: ContainerConfig fields ---------------------------------------


@pytest.mark.parametrize("flags,want", [
    pytest.param({}, {"stdin": False, "stdin_once": False, "tty": False}, id="none"),
    pytest.param({"stdin": True}, {"stdin": True, "stdin_once": False, "tty": False},
                 id="stdin"),
    pytest.param({"stdin": True, "stdin_once": True, "tty": True},
                 {"stdin": True, "stdin_once": True, "tty": True}, id="all"),
    pytest.param({"stdin_once": True}, {"stdin": False, "stdin_once": False, "tty": False},
                 id="once-without-stdin"),
    pytest.param({"tty": True}, {"stdin": False, "stdin_once": False, "tty": True},
                 id="tty"),
])
def test_stdio_reaches_the_config_not_the_annotations(tmp_path: Path, flags: dict[str, bool],
                                                      want: dict[str, bool]) -> None:
    cfg = pb.ContainerConfig(metadata=pb.ContainerMetadata(name="web"), command=["sh"],
                             annotations={"a": "b"}, stdin=flags.get("stdin", False),
                             stdin_once=flags.get("stdin_once", False),
                             tty=flags.get("tty", False))
    req = R.container_request(cfg)
    c = req.config
    assert (c.stdin, c.stdin_once, c.tty) == (cfg.stdin, cfg.stdin_once, cfg.tty)  # as asked
    # the task's (and the CRI record's) flags: stdin_once only with stdin
    assert stdio_flags(stdin=c.stdin, stdin_once=c.stdin_once, tty=c.tty) == want
    assert dict(req.annotations) == {"a": "b"}
    spec = B.build_spec(config=req.config, image={}, rootfs=str(tmp_path))
    assert spec["process"]["terminal"] is want["tty"]
    assert spec["annotations"] == {"a": "b"}  # nothing of ours in config.json

