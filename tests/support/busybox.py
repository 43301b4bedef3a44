"""Test images made on this machine from Debian's busybox-static (no image can be pulled)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from typing import Any

BUSYBOX = "/bin/busybox"


def build_rootfs(dest: str) -> str:
    """A minimal rootfs: busybox with every applet linked, /etc/passwd and /etc/group,
    and the empty mount points a config.json usually names."""
    if not os.path.exists(BUSYBOX):
        raise RuntimeError("busybox-static is not installed (scripts/install-deps.sh does it)")
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "tmp", "root",
              "home/user", "var", "run"):
        os.makedirs(os.path.join(dest, d), exist_ok=True)
    os.chmod(os.path.join(dest, "tmp"), 0o1777)
    shutil.copy2(BUSYBOX, os.path.join(dest, "bin/busybox"))
    applets = subprocess.run([BUSYBOX, "--list-full"], stdout=subprocess.PIPE, text=True,
                             check=True).stdout.split()
    for path in applets:
        link = os.path.join(dest, path)
        if path == "bin/busybox" or os.path.lexists(link):
            continue
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink("/bin/busybox", link)
    with open(os.path.join(dest, "etc/passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n"
                "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
    with open(os.path.join(dest, "etc/group"), "w") as f:
        f.write("root:x:0:\ntty:x:5:\nuser:x:1000:\nnogroup:x:65534:\n")
    return dest


def config(args: list[str], **overrides: object) -> dict[str, object]:
    """runc spec's default config with ARGS, no terminal, and OVERRIDES merged in."""
    from runtime.oci.cli.spec_cmd import default_spec

    c = default_spec()
    proc = c["process"]
    assert isinstance(proc, dict)
    proc["args"] = args
    proc["terminal"] = False
    for k, v in overrides.items():
        c[k] = v
    return c


def write_bundle(bundle: str, rootfs: str, cfg: dict[str, object]) -> str:
    os.makedirs(bundle, exist_ok=True)
    root = cfg["root"]
    assert isinstance(root, dict)
    root["path"] = os.path.abspath(rootfs)  # shared rootfs; runc refuses a symlink
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    return bundle


def edit_config(bundle: str, edit: Callable[[dict[str, Any]], object]) -> str:
    """Apply EDIT to BUNDLE's config.json in place; returns the bundle."""
    path = os.path.join(bundle, "config.json")
    with open(path) as f:
        cfg = json.load(f)
    edit(cfg)
    with open(path, "w") as f:
        json.dump(cfg, f)
    return bundle
