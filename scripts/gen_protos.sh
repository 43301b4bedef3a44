#!/usr/bin/env bash
# Regenerate the gRPC stubs from the .proto files (needs the dev extra: grpcio-tools).
# The generated modules are committed, so running corral never needs protoc.
set -euo pipefail
cd "$(dirname "$0")/.."
for proto in api/v1/apiserver.proto api/v1/node.proto runtime/service/cri/api.proto; do
  .venv/bin/python -m grpc_tools.protoc -I. --python_out=. --pyi_out=. --grpc_python_out=. "$proto"
done
