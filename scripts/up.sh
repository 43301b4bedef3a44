#!/usr/bin/env bash
# `make up`: until the cluster layers exist, run an example busybox container through
# corral-runc and show what it sees. Leaves nothing behind.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d /tmp/corral-up.XXXXXX)
trap 'rm -rf "$work"' EXIT
.venv/bin/python3 - "$work" <<'PY'
import sys
sys.path.insert(0, ".")
from tests.support import busybox
work = sys.argv[1]
rootfs = busybox.build_rootfs(f"{work}/rootfs")
cfg = busybox.config(["/bin/sh", "-c",
    "echo \"hello from a corral container: pid $$, hostname $(hostname)\"; "
    "echo \"its root: $(ls / | tr '\\n' ' ')\"; id"])
cfg["linux"]["cgroupsPath"] = "/corral-up"
busybox.write_bundle(f"{work}/bundle", rootfs, cfg)
PY
echo "+ corral-runc run --bundle $work/bundle corral-up"
.venv/bin/corral-runc --root "$work/state" run --bundle "$work/bundle" corral-up
