"""corral-runc features: the OCI features document (runtime-spec features.md)."""

from __future__ import annotations

import json
import sys

from .flags import parse
from .main import SPEC_VERSION, Globals


def main(g: Globals, argv: list[str]) -> int:
    parse({}, argv)
    from .. import cgroups, exechelper, seccomp
    from ..capabilities import ALL
    from ..mounts import EXTENSIONS, FLAGS, PROPAGATION
    from ..namespaces import FLAGS as NS
    doc = {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": SPEC_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer",
                  "poststart", "poststop"],
        "mountOptions": sorted([*FLAGS, *PROPAGATION, *EXTENSIONS]),
        "linux": {
            "namespaces": sorted(NS),
            "capabilities": list(ALL),
            "cgroup": cgroups.features(),
            "seccomp": seccomp.features(),
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
            "intelRdt": {"enabled": False},
            "mountExtensions": {"idmap": {"enabled": False}},
        },
        "annotations": {
            "org.corral.runc.version": "0.1.0",
            "org.corral.runc.exec-helper": "sealed-memfd" if exechelper.elf_image()
            else "none",
        },
    }
    sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    return 0
