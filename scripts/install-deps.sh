#!/usr/bin/env bash
# Install what corral needs on a Debian 12 machine, and nothing that is already there.
#   scripts/install-deps.sh            Debian packages + .venv with the dev tools
#   scripts/install-deps.sh --bench    also the tools the benchmarks compare against
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(python3 python3-venv busybox-static runc crun containerd podman conmon uidmap
          iproute2 libseccomp2 procps util-linux etcd-server etcd-client docker-registry
          apache2-utils containernetworking-plugins iptables prometheus gcc libc6-dev
          tinyproxy-bin)
[[ "${1:-}" == "--bench" ]] && packages+=(hyperfine time docker.io)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing Debian packages: ${missing[*]}"
  if [[ $(id -u) -ne 0 ]]; then echo "need root to install Debian packages" >&2; exit 1; fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Debian's interpreter, not whatever python3 is first on PATH: start-up time is part of
# the container start path, and a fresh Debian 12 machine has exactly this one.
if [[ ! -x .venv/bin/python3 ]]; then
  /usr/bin/python3 -m venv .venv
fi
stamp=.venv/.deps-stamp
if [[ ! -f $stamp || pyproject.toml -nt $stamp ]]; then
  .venv/bin/pip install -q --disable-pip-version-check -e '.[dev]'
  touch "$stamp"
fi
.venv/bin/python3 scripts/make_launchers.py .venv/bin
