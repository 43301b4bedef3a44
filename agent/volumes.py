"""Pod volumes on the node: made before the containers start, kept fresh, removed after.

    prepare(pod, *, pod_dir, client)   -> {volume name: Volume}   (idempotent: an agent that
                                          restarts calls it again and mounts nothing twice)
    container_mounts(container, volumes) -> [Mount]               (volumeMounts, subPath)
    refresh(pod, *, pod_dir, client)   -> [names rewritten]       (configMap/secret/downward
                                          API content changed: atomic swap)
    teardown(pod_uid, *, pod_dir)                                 (unmount, remove all)

Layout, under `<pod_dir>/<pod uid>/volumes/<kind>/<volume name>` (pod_dir is the agent's
pods directory, kubelet's /var/lib/kubelet/pods):

    emptyDir          a directory (0777); medium Memory: a tmpfs, size=sizeLimit
    hostPath          no directory of ours: the node's path, checked against `type`
    configMap         a directory of files         \\  written by write_atomic():
    secret            a tmpfs of files, 0400        >   <dir>/..2024_05_01_12_00_00.123_x/
    downwardAPI       a directory of files         /     <dir>/..data -> that directory
                                                        <dir>/<key>  -> ..data/<key>

An update writes a new timestamped directory, points a `..data_tmp` symlink at it and
renames that over `..data` (one atomic rename), so a reader sees all of the old content or
all of the new, never a mix or a missing file; the replaced directory is removed only at
the next update, so a reader that resolved `..data` just before the swap keeps its files.
configMap, secret and downwardAPI volumes
are mounted read-only.

Secret files are 0400 when the volume gives no defaultMode, as corral's issue asks
(api/pod.py defaults a secret volume's defaultMode to 0400); Kubernetes' own default is
0644, which configMap and downwardAPI volumes keep.
Errors are VolumeError and name the pod, the volume and the field:
`Pod web: volumes[config]: configMap "app" not found`.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from agent import env as envmod
from api import errors
from api.container import relative_sub_path
from api.quantity import QuantityError, parse

if TYPE_CHECKING:
    import ctypes

KINDS = ("emptyDir", "hostPath", "configMap", "secret", "downwardAPI")
ATOMIC_KINDS = ("configMap", "secret", "downwardAPI")
DATA = "..data"
DATA_TMP = "..data_tmp"
SECRET_DEFAULT_MODE = 0o400  # corral's issue; Kubernetes uses 0644
DEFAULT_MODE = 0o644

_MS_NOSUID, _MS_NODEV = 2, 4
_MNT_DETACH = 2


@cache
def _libc() -> ctypes.CDLL:
    """libc for mount(2)/umount2(2), loaded by the first tmpfs volume (ctypes: not on an
    idle agent)."""
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def _errno() -> int:
    import ctypes

    return ctypes.get_errno()


class VolumeError(ValueError):
    """A volume that cannot be made or mounted; the message names pod, volume, field."""


@dataclass(frozen=True)
class Volume:
    name: str
    kind: str          # one of KINDS
    host_path: str     # what a container mount binds
    read_only: bool    # every mount of it is read-only (configMap, secret, downwardAPI)
    tmpfs: bool = False


@dataclass(frozen=True)
class Mount:
    volume: str
    container_path: str
    host_path: str
    read_only: bool


# ---- paths and mounts ---------------------------------------------------------------------

def volumes_dir(pod_uid: str, *, pod_dir: str) -> str:
    if not pod_uid or "/" in pod_uid or pod_uid in (".", ".."):
        raise VolumeError(f"pod uid {pod_uid!r} cannot name a directory")
    return os.path.join(pod_dir, pod_uid, "volumes")


def _mountinfo() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return [_unescape(p) for p in points]


def _unescape(path: str) -> str:
    """mountinfo writes space, tab, newline and backslash as \\ooo."""
    out, i = [], 0
    while i < len(path):
        if path[i] == "\\" and path[i + 1:i + 4].isdigit():
            out.append(chr(int(path[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(path[i])
            i += 1
    return "".join(out)


def is_mounted(path: str) -> bool:
    return os.path.realpath(path) in _mountinfo()


def _mount_tmpfs(path: str, *, size: int | None, mode: int) -> None:
    if is_mounted(path):
        return
    opts = f"mode={mode:o}" + (f",size={size}" if size else "")
    if _libc().mount(b"tmpfs", os.fsencode(path), b"tmpfs", _MS_NOSUID | _MS_NODEV,
                   opts.encode()) != 0:
        err = _errno()
        raise OSError(err, f"mount tmpfs on {path}: {os.strerror(err)}")


def _umount(path: str) -> None:
    if _libc().umount2(os.fsencode(path), 0) == 0:
        return
    err = _errno()
    if err == errno.EBUSY and _libc().umount2(os.fsencode(path), _MNT_DETACH) == 0:
        return
    if err not in (errno.EINVAL, errno.ENOENT):  # EINVAL: not a mount point any more
        raise OSError(err, f"umount {path}: {os.strerror(err)}")


# ---- the atomic writer ----------------------------------------------------------------

Payload = dict[str, tuple[bytes, int]]  # relative path -> (content, mode)


def write_atomic(target: str, payload: Payload) -> bool:
    """Make TARGET hold exactly PAYLOAD, in one atomic step; False if it already did."""
    old = _current(target)
    if old is not None and _same(os.path.join(target, old), payload):
        return False
    stamp = time.strftime("%Y_%m_%d_%H_%M_%S", time.gmtime())
    new = f"..{stamp}.{time.time_ns() % 10**9:09d}_{os.getpid()}"
    new_dir = os.path.join(target, new)
    os.mkdir(new_dir, 0o755)
    try:
        for rel, (content, mode) in sorted(payload.items()):
            path = os.path.join(new_dir, rel)
            os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(content)
            os.chmod(path, mode)
        tmp = os.path.join(target, DATA_TMP)
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(new, tmp)
        os.rename(tmp, os.path.join(target, DATA))  # the swap
    except BaseException:
        shutil.rmtree(new_dir, ignore_errors=True)
        raise
    top = {rel.split("/", 1)[0] for rel in payload}
    for name in top:
        link = os.path.join(target, name)
        if not os.path.lexists(link):
            os.symlink(os.path.join(DATA, name), link)
    # the directory just replaced stays until the next write: a reader that resolved
    # ..data a moment before the swap still finds its files; older ones go
    for name in os.listdir(target):
        if not name.startswith(".."):
            if name not in top:
                os.unlink(os.path.join(target, name))
        elif name not in (DATA, DATA_TMP, new, old):
            shutil.rmtree(os.path.join(target, name), ignore_errors=True)
    return True


def _current(target: str) -> str | None:
    try:
        return os.readlink(os.path.join(target, DATA))
    except FileNotFoundError:
        return None


def _same(data_dir: str, payload: Payload) -> bool:
    found = set()
    for dirpath, _, files in os.walk(data_dir):
        for name in files:
            found.add(os.path.relpath(os.path.join(dirpath, name), data_dir))
    if found != set(payload):
        return False
    for rel, (content, mode) in payload.items():
        path = os.path.join(data_dir, rel)
        if stat.S_IMODE(os.lstat(path).st_mode) != mode:
            return False
        with open(path, "rb") as f:
            if f.read() != content:
                return False
    return True


def check_relative(path: str) -> str | None:
    """The problem with a projected file path, or None (relative, no `..` component)."""
    if not path:
        return "must not be empty"
    if os.path.isabs(path):
        return f"must be a relative path, got {path!r}"
    if ".." in path.split("/"):
        return f"must not contain '..', got {path!r}"
    if path.startswith(".."):
        return f"must not start with '..', got {path!r}"
    return None


# ---- rendering what configMap, secret and downwardAPI volumes hold (pure) -------------

def project(data: Mapping[str, bytes] | None, source: Mapping[str, Any], *,
            default_mode: int, where: str, what: str) -> Payload:
    """The files of a configMap or secret volume SOURCE over DATA (None: missing)."""
    mode = source.get("defaultMode")
    mode = default_mode if mode is None else int(mode)
    if data is None:
        return {}
    items = source.get("items")
    if not items:
        out = {}
        for key in data:
            problem = check_relative(key)
            if problem:
                raise VolumeError(f"{where}: {what} key {key!r}: {problem}")
            out[key] = (data[key], mode)
        return out
    out = {}
    for i, item in enumerate(items):
        key, path = item.get("key", ""), item.get("path", "")
        problem = check_relative(path)
        if problem:
            raise VolumeError(f"{where}.items[{i}].path: {problem}")
        if key not in data:
            if source.get("optional"):
                continue
            raise VolumeError(f"{where}.items[{i}].key: {what} has no key {key!r}")
        out[path] = (data[key], int(item["mode"]) if item.get("mode") is not None else mode)
    return out


def render_downward(pod: Mapping[str, Any], source: Mapping[str, Any], *,
                    where: str) -> Payload:
    """The files of a downwardAPI volume (status.podIP/hostIP: the pod's status, which the
    worker fills in with the sandbox's and the node's IPs)."""
    mode = source.get("defaultMode")
    mode = DEFAULT_MODE if mode is None else int(mode)
    out: Payload = {}
    for i, item in enumerate(source.get("items") or []):
        path = item.get("path", "")
        problem = check_relative(path)
        if problem:
            raise VolumeError(f"{where}.items[{i}].path: {problem}")
        try:
            if item.get("fieldRef"):
                text = envmod.field_value(pod, item["fieldRef"].get("fieldPath", ""),
                                          whole_maps=True)
            else:
                ref = item.get("resourceFieldRef") or {}
                if not ref.get("containerName"):
                    raise envmod.FieldPathError("containerName is required in volumes")
                text = envmod.resource_value(pod, container_name=ref["containerName"],
                                             resource=ref.get("resource", ""),
                                             divisor=ref.get("divisor"))
        except envmod.FieldPathError as err:
            field = "fieldRef" if item.get("fieldRef") else "resourceFieldRef"
            raise VolumeError(f"{where}.items[{i}].{field}: {err}") from None
        out[path] = (text.encode(), int(item["mode"]) if item.get("mode") is not None else mode)
    return out


# ---- prepare, refresh, teardown ----------------------------------------------------------

async def prepare(pod: Mapping[str, Any], *, pod_dir: str,
                  client: envmod.ObjectGetter) -> dict[str, Volume]:
    """Make every volume of POD; return them by name."""
    meta = pod.get("metadata") or {}
    base = volumes_dir(str(meta.get("uid", "")), pod_dir=pod_dir)
    out = {}
    for vol in (pod.get("spec") or {}).get("volumes") or []:
        name = vol.get("name", "")
        where = f"Pod {meta.get('name', '')}: volumes[{name}]"
        kind = next((k for k in KINDS if vol.get(k) is not None), "emptyDir")
        try:
            out[name] = await _prepare_one(pod, vol, kind=kind, base=base, where=where,
                                           client=client)
        except OSError as err:
            raise VolumeError(f"{where}: {err.strerror or err}") from err
    return out


async def _prepare_one(pod: Mapping[str, Any], vol: Mapping[str, Any], *, kind: str,
                       base: str, where: str, client: envmod.ObjectGetter) -> Volume:
    name = vol["name"]
    source = vol.get(kind) or {}
    if kind == "hostPath":
        return Volume(name, kind, _host_path(source, where=f"{where}.hostPath"), False)
    path = os.path.join(base, kind, name)
    os.makedirs(os.path.dirname(path), mode=0o750, exist_ok=True)
    os.makedirs(path, exist_ok=True)
    tmpfs = kind == "secret" or (kind == "emptyDir" and source.get("medium") == "Memory")
    if kind == "emptyDir":
        size = None
        if source.get("sizeLimit") is not None:
            try:
                size = parse(source["sizeLimit"]).value()
            except QuantityError as err:
                raise VolumeError(f"{where}.emptyDir.sizeLimit: {err}") from None
        if tmpfs:
            _mount_tmpfs(path, size=size, mode=0o777)
        os.chmod(path, 0o777)
        return Volume(name, kind, path, False, tmpfs)
    if tmpfs:
        _mount_tmpfs(path, size=None, mode=0o755)
    write_atomic(path, await _render(pod, kind, source, where=where, client=client))
    return Volume(name, kind, path, True, tmpfs)


async def _render(pod: Mapping[str, Any], kind: str, source: Mapping[str, Any], *,
                  where: str, client: envmod.ObjectGetter) -> Payload:
    if kind == "downwardAPI":
        return render_downward(pod, source, where=f"{where}.downwardAPI")
    namespace = (pod.get("metadata") or {}).get("namespace") or "default"
    ref = source.get("name" if kind == "configMap" else "secretName", "")
    try:
        data = (await envmod.config_map_data(client, namespace, ref) if kind == "configMap"
                else await envmod.secret_data(client, namespace, ref))
    except (errors.APIError, envmod.FieldPathError) as err:
        raise VolumeError(f"{where}: {kind} {ref!r}: {err}") from err
    if data is None and not source.get("optional"):
        raise VolumeError(f'{where}: {kind} "{ref}" not found in namespace {namespace!r}')
    return project(data, source, where=f"{where}.{kind}", what=kind,
                   default_mode=SECRET_DEFAULT_MODE if kind == "secret" else DEFAULT_MODE)


_HOST_TYPES = {
    "Directory": (stat.S_ISDIR, "a directory"),
    "DirectoryOrCreate": (stat.S_ISDIR, "a directory"),
    "File": (stat.S_ISREG, "a file"),
    "FileOrCreate": (stat.S_ISREG, "a file"),
    "Socket": (stat.S_ISSOCK, "a socket"),
    "CharDevice": (stat.S_ISCHR, "a character device"),
    "BlockDevice": (stat.S_ISBLK, "a block device"),
}


def _host_path(source: Mapping[str, Any], *, where: str) -> str:
    path, kind = source.get("path", ""), source.get("type") or ""
    if not os.path.isabs(path):
        raise VolumeError(f"{where}.path: must be an absolute path, got {path!r}")
    if not kind:
        return str(path)
    if kind not in _HOST_TYPES:
        raise VolumeError(f"{where}.type: unknown type {kind!r}")
    if not os.path.lexists(path):
        if kind == "DirectoryOrCreate":
            os.makedirs(path, mode=0o755, exist_ok=True)
        elif kind == "FileOrCreate":
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o644))
            except FileNotFoundError:
                raise VolumeError(f"{where}.path: {path} does not exist and its "
                                  "directory does not either") from None
        else:
            raise VolumeError(f"{where}.path: {path} does not exist (type {kind})")
    test, what = _HOST_TYPES[kind]
    if not test(os.stat(path).st_mode):
        raise VolumeError(f"{where}.path: {path} is not {what} (type {kind})")
    return str(path)


async def refresh(pod: Mapping[str, Any], *, pod_dir: str,
                  client: envmod.ObjectGetter) -> list[str]:
    """Rewrite the configMap, secret and downwardAPI volumes whose content changed (each
    atomically); return their names. A required object that has gone keeps its old
    content, and the first such error is raised after the other volumes are done."""
    meta = pod.get("metadata") or {}
    base = volumes_dir(str(meta.get("uid", "")), pod_dir=pod_dir)
    changed, problems = [], []
    for vol in (pod.get("spec") or {}).get("volumes") or []:
        kind = next((k for k in ATOMIC_KINDS if vol.get(k) is not None), None)
        if kind is None:
            continue
        name = vol.get("name", "")
        path = os.path.join(base, kind, name)
        if not os.path.isdir(path):
            continue  # not prepared yet
        where = f"Pod {meta.get('name', '')}: volumes[{name}]"
        try:
            if write_atomic(path, await _render(pod, kind, vol[kind], where=where,
                                                client=client)):
                changed.append(name)
        except (VolumeError, errors.APIError) as err:
            problems.append(err)
    if problems:
        raise problems[0]
    return changed


def teardown(pod_uid: str, *, pod_dir: str) -> None:
    """Unmount every mount under the pod's directory (deepest first), then remove it."""
    top = os.path.realpath(os.path.join(pod_dir, pod_uid))
    volumes_dir(pod_uid, pod_dir=pod_dir)  # checks the uid
    mounts = [m for m in _mountinfo() if m == top or m.startswith(top + "/")]
    for m in sorted(set(mounts), key=len, reverse=True):
        _umount(m)
    left = [m for m in _mountinfo() if m == top or m.startswith(top + "/")]
    if left:
        raise VolumeError(f"pod {pod_uid}: still mounted after unmount: {', '.join(left)}")
    if os.path.lexists(top):
        shutil.rmtree(top)


# ---- container mounts ------------------------------------------------------------------

def container_mounts(container: Mapping[str, Any], volumes: Mapping[str, Volume], *,
                     pod: str = "") -> list[Mount]:
    """The mounts of CONTAINER's volumeMounts over the prepared VOLUMES. subPath must stay
    inside the volume: relative, no `..`, and no symlink out of it; a missing subPath of a
    writable volume is made as a directory, as kubelet does."""
    where = f"{'Pod ' + pod + ': ' if pod else ''}containers[{container.get('name', '')}]"
    out: list[Mount] = []
    seen: set[str] = set()
    for i, vm in enumerate(container.get("volumeMounts") or []):
        here = f"{where}.volumeMounts[{i}]"
        name = vm.get("name", "")
        if name not in volumes:
            raise VolumeError(f"{here}.name: no volume named {name!r}")
        vol = volumes[name]
        target = os.path.normpath("/" + str(vm.get("mountPath", "")).lstrip("/"))
        if not vm.get("mountPath") or ":" in vm["mountPath"]:
            raise VolumeError(f"{here}.mountPath: must be a path without ':', got "
                              f"{vm.get('mountPath')!r}")
        if target in seen:
            raise VolumeError(f"{here}.mountPath: {target} is mounted twice")
        seen.add(target)
        host = vol.host_path
        if vm.get("subPath"):
            host = _sub_path(vol, vm["subPath"], where=f"{here}.subPath")
        out.append(Mount(name, target, host, bool(vm.get("readOnly")) or vol.read_only))
    return out


def _sub_path(vol: Volume, sub: str, *, where: str) -> str:
    problem = relative_sub_path(sub)  # the API's own rule, for objects stored before it
    if problem:
        raise VolumeError(f"{where}: {problem}")
    root = os.path.realpath(vol.host_path)
    joined = os.path.join(root, sub)
    if not os.path.lexists(joined):
        if vol.read_only:
            raise VolumeError(f"{where}: {sub!r} does not exist in read-only volume "
                              f"{vol.name!r}")
        _safe_makedirs(root, sub, where=where)
    real = os.path.realpath(joined)
    if real != root and not real.startswith(root + "/"):
        raise VolumeError(f"{where}: {sub!r} leads out of volume {vol.name!r} (to {real})")
    return real


def _safe_makedirs(root: str, sub: str, *, where: str) -> None:
    """Make ROOT/SUB one component at a time, never through a symlink."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in [p for p in sub.split("/") if p and p != "."]:
            try:
                os.mkdir(part, 0o755, dir_fd=fd)
            except FileExistsError:
                pass
            try:
                nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except OSError:
                raise VolumeError(f"{where}: {sub!r}: {part!r} is not a directory of the "
                                  "volume") from None
            os.close(fd)
            fd = nxt
    finally:
        os.close(fd)
