#!/usr/bin/env bash
# `make up` (after `make deps`): a local cluster of 3 nodes, each its own network namespace
# with its own agent and runtime service (`clusterctl cluster up`), the example web service
# from manifests/examples/ applied to it, and its pods.
#
#   NODES=2 make up                              another size
#   .venv/bin/clusterctl cluster down            stops it and removes everything it made
set -euo pipefail
cd "$(dirname "$0")/.."
ctl=.venv/bin/clusterctl
dir="${CORRAL_CLUSTER_DIR:-$HOME/.corral/clusters/corral-local}"
if [ -f "$dir/state.json" ]; then
    echo "A cluster is already up in $dir (.venv/bin/clusterctl cluster down --dir $dir stops it)"
else
    echo "+ clusterctl cluster up --nodes ${NODES:-3} --dir $dir"
    $ctl cluster up --nodes "${NODES:-3}" --dir "$dir"
fi
cfg=(--config "$dir/config")
echo "+ clusterctl apply -f manifests/examples/web.yaml"
$ctl "${cfg[@]}" apply -f manifests/examples/web.yaml
echo "+ clusterctl rollout status deployment/web"
$ctl "${cfg[@]}" rollout status deployment/web --timeout 120s
echo "+ clusterctl get nodes,pods -o wide"
$ctl "${cfg[@]}" get nodes -o wide
$ctl "${cfg[@]}" get pods -o wide
