"""Which cgroup hierarchies this host has, from one read of /proc/self/mountinfo.

    mode "v2"      cgroup2 is mounted at the root (/sys/fs/cgroup): one hierarchy
    mode "v1"      one cgroup (v1) mount per controller set under the root
    mode "hybrid"  v1 mounts plus a cgroup2 mount below the root (/sys/fs/cgroup/unified)

Hierarchies are keyed by their v1 controller list as the kernel prints it ("memory",
"cpu,cpuacct", "name=systemd") and "unified" for cgroup2. `cgroup_dirs` turns a
cgroupsPath into one directory per hierarchy, as runc's cgroupfs driver does.
"""

from __future__ import annotations

from ..errors import ConfigError, SetupError

MOUNTINFO = "/proc/self/mountinfo"
SELF_CGROUP = "/proc/self/cgroup"
UNIFIED = "unified"

# cgroup (v1) mount options that are not controller names.
_NOT_CONTROLLERS = frozenset({
    "rw", "ro", "xattr", "noprefix", "clone_children", "cpuset_v2_mode", "favordynmods",
    "nosuid", "nodev", "noexec", "relatime", "noatime", "none",
})


class Hierarchy:
    __slots__ = ("controllers", "key", "mountpoint", "root")

    def __init__(self, key: str, mountpoint: str, root: str, controllers: tuple[str, ...]):
        self.key = key
        self.mountpoint = mountpoint
        self.root = root  # the directory of the hierarchy that is mounted there
        self.controllers = controllers

    def __repr__(self) -> str:
        return f"Hierarchy({self.key!r}, {self.mountpoint!r}, root={self.root!r})"


class Host:
    __slots__ = ("hierarchies", "mode", "root")

    def __init__(self, root: str, mode: str, hierarchies: list[Hierarchy]) -> None:
        self.root = root
        self.mode = mode
        self.hierarchies = hierarchies

    def has(self, controller: str) -> bool:
        return any(controller in h.controllers for h in self.hierarchies)

    def unified(self) -> Hierarchy | None:
        for h in self.hierarchies:
            if h.key == UNIFIED:
                return h
        return None


def _unescape(s: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo
    if "\\" not in s:
        return s
    out, i = [], 0
    while i < len(s):
        if s[i] == "\\" and s[i + 1:i + 4].isdigit():
            out.append(chr(int(s[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def _below(path: str, root: str) -> bool:
    return path == root or path.startswith(root + "/") or root == "/"


def parse_mountinfo(text: str, root: str) -> Host:
    """The cgroup hierarchies mounted at or below `root`, first mount of each wins."""
    root = root.rstrip("/") or "/"
    v1: list[Hierarchy] = []
    unified: Hierarchy | None = None
    seen: set[str] = set()
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3 or tail[0] not in ("cgroup", "cgroup2"):
            continue
        mountpoint = _unescape(fields[4])
        if not _below(mountpoint, root):
            continue
        mount_root = _unescape(fields[3])
        if tail[0] == "cgroup2":
            if unified is None:
                unified = Hierarchy(UNIFIED, mountpoint, mount_root, ())
            continue
        ctrls = tuple(o for o in tail[2].split(",")
                      if o not in _NOT_CONTROLLERS and not o.startswith("release_agent="))
        key = ",".join(ctrls)
        if ctrls and key not in seen:
            seen.add(key)
            v1.append(Hierarchy(key, mountpoint, mount_root, ctrls))
    if unified is not None and unified.mountpoint == root:
        return Host(root, "v2", [unified])
    if v1:
        return Host(root, "hybrid", [*v1, unified]) if unified else Host(root, "v1", v1)
    if unified is not None:  # cgroup2 only, but not at the root itself
        return Host(root, "v2", [unified])
    raise SetupError(f"no cgroup filesystem is mounted at {root}")


_hosts: dict[tuple[str, str], Host] = {}


def read_host(root: str = "/sys/fs/cgroup") -> Host:
    """The host's hierarchies below `root`; mountinfo is read once per process."""
    key = (root, MOUNTINFO)
    host = _hosts.get(key)
    if host is None:
        with open(MOUNTINFO, "rb") as f:
            text = f.read().decode("utf-8", "surrogateescape")
        host = _hosts[key] = parse_mountinfo(text, root)
    return host


def parse_self_cgroup(text: str) -> dict[str, str]:
    """/proc/<pid>/cgroup as {controller or "name=x" or "unified": path}."""
    own: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if parts[0] == "0" and parts[1] == "":
            own[UNIFIED] = parts[2]
        else:
            for c in parts[1].split(","):
                own[c] = parts[2]
    return own


def clean_path(path: str, field: str) -> tuple[bool, str]:
    """(is_absolute, "/a/b") for a cgroupsPath; refuses paths that leave or name the root."""
    parts = [p for p in path.split("/") if p and p != "."]
    if ".." in parts:
        raise ConfigError(field, f'must not contain "..", got {path!r}')
    if not parts:
        raise ConfigError(field, f"must name a cgroup below the hierarchy root, got {path!r}")
    return path.startswith("/"), "/" + "/".join(parts)


def cgroup_dirs(host: Host, *, container_id: str, cgroups_path: str | None,
                field: str = "linux.cgroupsPath") -> dict[str, str]:
    """{hierarchy key: directory} for the container's cgroup in every hierarchy."""
    if cgroups_path:
        absolute, rel = clean_path(cgroups_path, field)
    else:
        absolute, rel = clean_path("/" + container_id, "container id")
    own: dict[str, str] = {}
    if not absolute:
        with open(SELF_CGROUP) as f:
            own = parse_self_cgroup(f.read())
    dirs: dict[str, str] = {}
    for h in host.hierarchies:
        mp = h.mountpoint.rstrip("/")
        if absolute:
            dirs[h.key] = mp + rel
            continue
        mine = own.get(h.controllers[0] if h.controllers else UNIFIED)
        if mine is None:
            raise SetupError(f"{SELF_CGROUP} has no entry for the {h.key} hierarchy")
        if h.root != "/" and _below(mine, h.root):
            mine = mine[len(h.root):]
        dirs[h.key] = mp + mine.rstrip("/") + rel
    return dirs
