"""The local service behind the CRI servicers: containers of pod sandboxes, in plain Python.

::

    create(tenant, sandbox, ContainerRequest)       start / stop(grace) / remove(force)
      ├ name (name, attempt) unique in the sandbox   └ tasks.py (the shim) + events
      ├ image (tenant's) -> config + chain ID
      ├ snapshot "<id>" on the chain, mounted at STATE/rootfs/<tenant>/<id>
      ├ bundle.build_spec (joins the sandbox's net/ipc/uts by the paths the sandbox
      │   gives: pinned files, or its pause's /proc/<pid>/ns; binds the pod's /dev/shm)
      │                                                      ── any failure: undo all
      ├ tasks.create (shim, `runtime create`; stdin/stdin_once/tty from the config)
      └ containers.db record (CRI metadata under spec["cri"], stdio flags included)

Every blocking call here runs in a worker thread (the servicers use asyncio.to_thread).
Exceptions are the packages' own (tasks, containers, sandboxes, bundle, images, snapshots)
and ``ServiceError``s below; cri/server.py maps them all to gRPC codes.
"""

from __future__ import annotations

import builtins
import json
import os
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from runtime.service import bundle as B
from runtime.service import sandboxes as S
from runtime.service.containers import Container, ContainerStore
from runtime.service.containers import NotFound as ContainerNotFound
from runtime.service.content import Digest, FileContentStore
from runtime.service.events import Event, EventBus, EventType
from runtime.service.gc import Roots
from runtime.service.images.mediatypes import Descriptor
from runtime.service.images.service import LABEL_UNPACKED, ImageService
from runtime.service.images.store import Image, ImageNotFound
from runtime.service.images.unpack import resolve_manifest
from runtime.service.snapshots import NotFound as SnapshotNotFound
from runtime.service.snapshots import OverlaySnapshotter, mount_all, unmount_all
from runtime.service.tasks import TaskInfo, TaskManager, TaskState, stdio_flags

SNAPSHOTTER = "overlayfs"


class ServiceError(Exception):
    pass


class NotFound(ServiceError):
    pass


class AlreadyExists(ServiceError):
    pass


class InvalidArgument(ServiceError):
    pass


class FailedPrecondition(ServiceError):
    pass


class DeadlineExceeded(ServiceError):
    pass


@dataclass(frozen=True)
class ContainerRequest:
    """CreateContainer's config, as plain data (built from the protobuf by the servicer)."""

    name: str
    attempt: int
    image: str
    config: B.ContainerConfig
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    log_path: str = ""  # relative to the sandbox's log_directory


@dataclass(frozen=True)
class ImageRef:
    image: Image
    id: str  # the config digest (containerd's image ID)
    config: dict[str, Any]
    chain_id: str
    manifest_digest: str
    size: int


@dataclass(frozen=True)
class ContainerView:
    """One container as ContainerStatus and ListContainers show it."""

    record: Container
    task: TaskInfo | None

    @property
    def cri(self) -> dict[str, Any]:
        cri: dict[str, Any] = self.record.spec["cri"]
        return cri


class Service:
    def __init__(self, *, root: str, state: str, images: ImageService,
                 content: FileContentStore, snapshotter: OverlaySnapshotter,
                 tasks: TaskManager, bus: EventBus | None, runtimes: dict[str, list[str]],
                 default_runtime: str, cgroup_parent: str = "/corral") -> None:
        self.root, self.state = root, state
        self.images, self.content, self.snapshotter = images, content, snapshotter
        self.tasks = tasks
        self.bus = bus
        self.runtimes = runtimes
        self.default_runtime = default_runtime
        self.cgroup_parent = cgroup_parent  # for sandboxes that name none
        self.containers = ContainerStore(os.path.join(root, "containers.db"))
        self._lock = threading.Lock()
        self._reserved: set[tuple[str, str, str]] = set()
        self._waiting: set[tuple[str, str]] = set()
        # running tasks with a waiter: their state is known without asking their shim
        # (a List call asked every shim: 2 round trips per pod per relist)
        self._live: dict[tuple[str, str], TaskInfo] = {}
        # image target digest -> (config digest, config, manifest digest, content bytes)
        self._resolved: dict[str, tuple[str, dict[str, Any], str, int]] = {}
        images.add_roots(self._snapshot_roots)

    def _snapshot_roots(self) -> Roots:
        keys = {(SNAPSHOTTER, k) for k in self._active_snapshots()}
        return Roots(snapshots=keys)

    def _active_snapshots(self) -> set[str]:
        return {info.name for info in self.snapshotter.walk()
                if info.name.startswith("rootfs-")}

    # ---- images ---------------------------------------------------------------------------

    def image(self, tenant: str, ref: str) -> ImageRef:
        """The tenant's image by name or by ID (config digest, or a prefix of one)."""
        try:
            img = self.images.get(tenant, ref)
        except ImageNotFound:
            img = self._by_id(tenant, ref)
        resolved = self._resolve_image(tenant, img)
        config_digest, config, manifest_digest, size = resolved
        chain = img.labels.get(LABEL_UNPACKED.format(SNAPSHOTTER), "")
        if not chain:
            img = self.images.unpack(tenant, img.name, snapshotter=SNAPSHOTTER)
            chain = img.labels[LABEL_UNPACKED.format(SNAPSHOTTER)]
        return ImageRef(img, config_digest, config, chain, manifest_digest, size)

    def _resolve_image(self, tenant: str, img: Image) -> tuple[str, dict[str, Any], str, int]:
        """(config digest, config, manifest digest, content bytes) of IMG. Content-addressed,
        so the same for every image with its target: resolved once (each CreateContainer
        and ImageStatus re-read and re-parsed the index, manifest and config, and stat'ed
        every blob for the size)."""
        resolved = self._resolved.get(img.target.digest)
        if resolved is None:
            desc = Descriptor(img.target.media_type, Digest(img.target.digest),
                              img.target.size)
            r = resolve_manifest(self.content, desc, what=f"image {tenant}/{img.name}",
                                 platform=self.images.platform)
            config = json.loads(self.content.read(r.parsed.config.digest))
            resolved = (str(r.parsed.config.digest), config, str(r.manifest.digest),
                        self.images.usage(tenant, img.name).content_bytes)
            self._resolved[img.target.digest] = resolved
        return resolved

    def _by_id(self, tenant: str, ref: str) -> Image:
        want = ref if ref.startswith("sha256:") else "sha256:" + ref
        for img in self.images.list(tenant):
            try:
                config_digest = self._resolve_image(tenant, img)[0]
            except Exception:
                continue
            if len(want) > 10 and config_digest.startswith(want):
                return img
        raise ImageNotFound(f"image {ref!r}: not found in namespace {tenant}")

    def list_images(self, tenant: str) -> builtins.list[ImageRef]:
        """Every image of TENANT, one entry per name."""
        out = []
        for img in self.images.list(tenant):
            try:
                out.append(self.image(tenant, img.name))
            except Exception:
                continue
        return out

    # ---- rootfs -------------------------------------------------------------------------

    def rootfs_dir(self, tenant: str, cid: str) -> str:
        return os.path.join(self.state, "rootfs", tenant, cid)

    def prepare_rootfs(self, tenant: str, cid: str, chain_id: str) -> str:
        key = f"rootfs-{tenant}-{cid}"
        mounts = self.snapshotter.prepare(key, chain_id)
        target = self.rootfs_dir(tenant, cid)
        try:
            os.makedirs(target, exist_ok=True)
            mount_all(mounts, target)
        except BaseException:
            self.snapshotter.remove(key)
            shutil.rmtree(target, ignore_errors=True)
            raise
        return target

    def release_rootfs(self, tenant: str, cid: str) -> None:
        target = self.rootfs_dir(tenant, cid)
        if os.path.isdir(target):
            unmount_all(target)
            os.rmdir(target)
        try:
            self.snapshotter.remove(f"rootfs-{tenant}-{cid}")
        except SnapshotNotFound:
            pass

    # ---- tasks shared by sandboxes and containers ------------------------------------------

    def run_task(self, *, tenant: str, cid: str, image: ImageRef, config: B.ContainerConfig,
                 runtime: str, log_path: str | None, start: bool = False) -> TaskInfo:
        """Rootfs + bundle + shim (created, not started, unless START); all undone on
        failure."""
        if runtime not in self.runtimes:
            raise InvalidArgument(f"Container {config.name}: runtime_handler: unknown runtime "
                                  f"class {runtime!r}; known: {', '.join(sorted(self.runtimes))}")
        B.linux_resources(config)  # invalid resources fail before anything is made
        rootfs = self.prepare_rootfs(tenant, cid, image.chain_id)
        try:
            spec = B.build_spec(config=config, image=image.config.get("config") or {},
                                rootfs=rootfs)
            return self.tasks.create(namespace=tenant, container_id=cid, spec=spec,
                                     runtime=runtime, log_path=log_path, start=start,
                                     stdin=config.stdin, stdin_once=config.stdin_once,
                                     tty=config.tty)
        except BaseException:
            self.release_rootfs(tenant, cid)
            raise

    def delete_task(self, tenant: str, cid: str) -> None:
        try:
            self.tasks.delete(tenant, cid, force=True)
        except Exception:
            if os.path.isdir(self.tasks.task_dir(tenant, cid)):
                raise
        self.release_rootfs(tenant, cid)

    # ---- containers ---------------------------------------------------------------------

    def _resolve(self, tenant: str, cid: str) -> Container:
        try:
            return self.containers.get(tenant, cid)
        except (ContainerNotFound, ValueError):
            pass
        found = [c for c in self.containers.list(tenant) if c.id.startswith(cid)] if cid else []
        if len(found) == 1:
            return found[0]
        raise NotFound(f"Container {cid}: not found" if not found
                       else f"Container {cid}: ambiguous prefix")

    def create(self, tenant: str, sandbox: S.Sandbox, req: ContainerRequest, *,
               start: bool = False) -> str:
        """CreateContainer; with START the container is also started (one runtime call,
        `run --detach`, instead of create then start: corral-ctr run's path)."""
        where = f"Container {req.name}"
        if not req.name:
            raise InvalidArgument("Container: metadata.name: must not be empty")
        if sandbox.state is not S.SandboxState.READY:
            raise FailedPrecondition(f"{where}: sandbox {sandbox.id[:13]} is "
                                     f"{sandbox.state.value}, not ready")
        key = (tenant, sandbox.id, f"{req.name}_{req.attempt}")
        with self._lock:
            for c in self.containers.list(tenant):
                cri = c.spec.get("cri", {})
                if cri.get("sandbox_id") == sandbox.id and \
                        (cri.get("name"), cri.get("attempt")) == (req.name, req.attempt):
                    raise AlreadyExists(f"{where}: name {req.name!r} (attempt {req.attempt}) "
                                        f"is reserved for container {c.id} in sandbox "
                                        f"{sandbox.id[:13]}")
            if key in self._reserved:
                raise AlreadyExists(f"{where}: name {req.name!r} is being created")
            self._reserved.add(key)
        try:
            return self._create(tenant, sandbox, req, start=start)
        finally:
            with self._lock:
                self._reserved.discard(key)

    def _create(self, tenant: str, sandbox: S.Sandbox, req: ContainerRequest, *,
                start: bool) -> str:
        where = f"Container {req.name}"
        try:
            image = self.image(tenant, req.image)
        except ImageNotFound:
            raise NotFound(f"{where}: image {req.image!r}: not found in namespace "
                           f"{tenant}") from None
        cid = secrets.token_hex(32)
        log_path = ""
        if req.log_path:
            if not sandbox.spec.log_directory:
                log_path = req.log_path if os.path.isabs(req.log_path) else ""
            else:
                log_path = os.path.join(sandbox.spec.log_directory, req.log_path)
        parent = sandbox.spec.cgroup_parent or f"{self.cgroup_parent}/{tenant}"
        cfg = B.ContainerConfig(**{**_fields(req.config), "namespaces":
                                   sandbox.join_namespaces(), "cgroups_path": f"{parent}/{cid}",
                                   "mounts": pod_mounts(sandbox, req.config.mounts)})
        runtime = sandbox.spec.runtime_handler or self.default_runtime
        info = self.run_task(tenant=tenant, cid=cid, image=image, config=cfg, runtime=runtime,
                             log_path=log_path or None, start=start)
        cri = {"sandbox_id": sandbox.id, "name": req.name, "attempt": req.attempt,
               "annotations": dict(req.annotations), "log_path": info.log_path,
               "image": req.image, "image_id": image.id,
               "started_at": time.time_ns() if start else 0,
               "resources": _resources_dict(cfg.resources),
               **stdio_flags(stdin=cfg.stdin, stdin_once=cfg.stdin_once, tty=cfg.tty)}
        try:
            self.containers.create(Container(
                namespace=tenant, id=cid, image=image.image.name, runtime=runtime,
                snapshot=f"rootfs-{tenant}-{cid}", labels=dict(req.labels),
                spec={"cri": cri}))
        except BaseException:
            self.delete_task(tenant, cid)
            raise
        self._publish(tenant, cid, sandbox.id, EventType.CREATED)
        if start:
            self._publish(tenant, cid, sandbox.id, EventType.STARTED)
            self.watch(tenant, cid, sandbox.id, info)
        return cid

    def start(self, tenant: str, cid: str) -> None:
        c = self._resolve(tenant, cid)
        # recorded before the task runs: a status read in between must never see a
        # running container without a start time
        cri = dict(c.spec["cri"], started_at=time.time_ns())
        self.containers.update(tenant, c.id, spec={"cri": cri})
        try:
            info = self.tasks.start(tenant, c.id)
        except BaseException:
            self.containers.update(tenant, c.id, spec={"cri": c.spec["cri"]})
            raise
        self._publish(tenant, c.id, cri["sandbox_id"], EventType.STARTED)
        self.watch(tenant, c.id, cri["sandbox_id"], info)

    def watch(self, tenant: str, cid: str, sandbox_id: str, info: TaskInfo | None = None, *,
              publish: bool = True) -> None:
        """A thread that waits for the task's exit and publishes it (unless not PUBLISH:
        a sandbox's pause). Until then INFO (the task RUNNING) answers for the task."""
        with self._lock:
            if info is not None and info.state is TaskState.RUNNING:
                self._live[(tenant, cid)] = info
            if (tenant, cid) in self._waiting:
                return
            self._waiting.add((tenant, cid))

        def wait() -> None:
            try:
                ex = self.tasks.wait(tenant, cid)
            except Exception:
                return
            finally:
                with self._lock:
                    self._waiting.discard((tenant, cid))
                    self._live.pop((tenant, cid), None)
            if self.bus is not None and publish:
                self.bus.publish(Event(tenant, cid, sandbox_id, EventType.STOPPED,
                                       ex.exited_at_ns, ex.code, ex.reason))
        threading.Thread(target=wait, name=f"wait-{cid[:12]}", daemon=True).start()

    def recover(self) -> None:
        """After a restart: watch every running task again."""
        for tenant in {t.namespace for t in self.tasks.list()}:
            for c in self.containers.list(tenant):
                try:
                    info = self.tasks.get(tenant, c.id)
                    if info.state is TaskState.RUNNING:
                        self.watch(tenant, c.id, c.spec["cri"]["sandbox_id"], info)
                except Exception:
                    continue

    def stop(self, tenant: str, cid: str, *, grace: float) -> None:
        c = self._resolve(tenant, cid)
        info = self.tasks.get(tenant, c.id)
        if info.state is TaskState.CREATED:
            self.tasks.kill(tenant, c.id, 9, all_processes=True)
            return
        if info.state is TaskState.STOPPED:
            return
        self.tasks.stop(tenant, c.id, grace=grace)
        with self._lock:  # exited: a status read after StopContainer must say so, even
            self._live.pop((tenant, c.id), None)  # before the watch thread has seen it

    def remove(self, tenant: str, cid: str) -> None:
        """Remove the container (stopping it first); a missing one is fine, as CRI says."""
        try:
            c = self._resolve(tenant, cid)
        except NotFound:
            return
        self.delete_task(tenant, c.id)
        try:
            self.containers.delete(tenant, c.id)
        except ContainerNotFound:
            return
        self._publish(tenant, c.id, c.spec["cri"]["sandbox_id"], EventType.DELETED)

    def get(self, tenant: str, cid: str) -> ContainerView:
        c = self._resolve(tenant, cid)
        return ContainerView(c, self._task(tenant, c.id))

    def _task(self, tenant: str, cid: str) -> TaskInfo | None:
        live = self._live.get((tenant, cid))
        if live is not None:
            return live
        try:
            return self.tasks.get(tenant, cid)
        except Exception:
            return None

    def ids_in_sandbox(self, tenant: str, sandbox_id: str) -> builtins.list[str]:
        """The IDs of SANDBOX_ID's containers, from the records alone (no shim is asked:
        with many containers running, asking every shim made each removal O(n))."""
        return [c.id for c in self.containers.list(tenant)
                if c.spec.get("cri", {}).get("sandbox_id") == sandbox_id]

    def list(self, tenant: str) -> builtins.list[ContainerView]:
        return [ContainerView(c, self._task(tenant, c.id))
                for c in self.containers.list(tenant)]

    def exec_sync(self, tenant: str, cid: str, cmd: builtins.list[str],
                  timeout: float) -> tuple[bytes, bytes, int]:
        c = self._resolve(tenant, cid)
        if not cmd:
            raise InvalidArgument(f"Container {c.id[:13]}: cmd: must not be empty")
        r = self.tasks.exec(tenant, c.id, args=cmd, timeout=timeout or None)
        if r.timed_out:
            raise DeadlineExceeded(f"Container {c.id[:13]}: exec {cmd[0]}: timeout "
                                   f"{timeout:g}s exceeded")
        return r.stdout, r.stderr, r.exit_code

    def update_resources(self, tenant: str, cid: str, resources: B.Resources) -> None:
        c = self._resolve(tenant, cid)
        cfg = B.ContainerConfig(name=c.spec["cri"]["name"], resources=resources)
        linux = B.linux_resources(cfg)
        linux.pop("devices", None)
        info = self.tasks.get(tenant, c.id)
        if info.state not in (TaskState.CREATED, TaskState.RUNNING):
            raise FailedPrecondition(f"Container {c.id[:13]}: is {info.state.value}, "
                                     "cannot update its resources")
        runtime_root = os.path.join(self.tasks.state_dir, "runtime", c.runtime)
        p = subprocess.run([*self.runtimes[c.runtime], "--root", runtime_root, "update",
                            "--resources", "-", c.id], input=json.dumps(linux).encode(),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
        if p.returncode != 0:
            raise ServiceError(f"Container {c.id[:13]}: update: "
                               f"{p.stdout.decode(errors='replace').strip()}")
        cri = dict(c.spec["cri"], resources=_resources_dict(resources))
        self.containers.update(tenant, c.id, spec={"cri": cri})

    def reopen_log(self, tenant: str, cid: str) -> None:
        """The container's shim closes its log and opens it again at the same path (after
        the caller renamed it away): CRI's ReopenContainerLog."""
        c = self._resolve(tenant, cid)
        self.tasks.reopen_log(tenant, c.id)

    def _publish(self, tenant: str, cid: str, sandbox_id: str, kind: EventType) -> None:
        if self.bus is not None:
            self.bus.publish(Event(tenant, cid, sandbox_id, kind, time.time_ns()))

    def close(self) -> None:
        self.containers.close()


def pod_mounts(sandbox: S.Sandbox, mounts: tuple[B.MountSpec, ...]
               ) -> tuple[B.MountSpec, ...]:
    """MOUNTS plus the pod's shared /dev/shm (as containerd: one tmpfs per sandbox, bound
    into each container), unless the container mounts something there itself."""
    if not sandbox.shm or any(m.container_path.rstrip("/") == "/dev/shm" for m in mounts):
        return mounts
    return (*mounts, B.MountSpec(container_path="/dev/shm", host_path=sandbox.shm))


def _fields(cfg: B.ContainerConfig) -> dict[str, Any]:
    return {f: getattr(cfg, f) for f in cfg.__dataclass_fields__}


def _resources_dict(r: B.Resources) -> dict[str, int]:
    return {f: getattr(r, f) for f in r.__dataclass_fields__}


class PauseContainers:
    """sandboxes.PauseRunner: the sandbox container from the configured sandbox image."""

    def __init__(self, service: Service, *, sandbox_image: str) -> None:
        self.service = service
        self.sandbox_image = sandbox_image

    def start(self, sandbox: S.Sandbox) -> int:
        svc = self.service
        if not self.sandbox_image:
            raise FailedPrecondition(f"Sandbox {sandbox.spec.name}: config sandbox_image: "
                                     "not set")
        try:
            image = svc.image(sandbox.tenant, self.sandbox_image)
        except ImageNotFound:
            raise NotFound(f"Sandbox {sandbox.spec.name}: sandbox image "
                           f"{self.sandbox_image!r}: not found") from None
        parent = sandbox.spec.cgroup_parent or f"{svc.cgroup_parent}/{sandbox.tenant}"
        cfg = B.ContainerConfig(name=f"{sandbox.spec.name}-sandbox",
                                hostname="" if sandbox.spec.host_network else
                                sandbox.spec.hostname,
                                namespaces=(("network", sandbox.netns or "/proc/1/ns/net"),),
                                cgroups_path=f"{parent}/{sandbox.id}")
        runtime = sandbox.spec.runtime_handler or svc.default_runtime
        svc.run_task(tenant=sandbox.tenant, cid=sandbox.id, image=image, config=cfg,
                     runtime=runtime, log_path=None)
        try:
            info = svc.tasks.start(sandbox.tenant, sandbox.id)
        except BaseException:
            svc.delete_task(sandbox.tenant, sandbox.id)
            raise
        svc.watch(sandbox.tenant, sandbox.id, sandbox.id, info, publish=False)
        return info.pid

    def pid(self, sandbox: S.Sandbox) -> int:
        info = self.service._task(sandbox.tenant, sandbox.id)
        return info.pid if info is not None and info.state is TaskState.RUNNING else 0

    def stop(self, sandbox: S.Sandbox) -> None:
        try:
            self.service.tasks.stop(sandbox.tenant, sandbox.id, grace=0)
        except Exception:
            pass

    def remove(self, sandbox: S.Sandbox) -> None:
        if os.path.isdir(self.service.tasks.task_dir(sandbox.tenant, sandbox.id)):
            self.service.delete_task(sandbox.tenant, sandbox.id)
        else:
            self.service.release_rootfs(sandbox.tenant, sandbox.id)
