"""The floor under bench/api_write.py: a grpc.aio echo server that does no work at all.

    server: a child process serving one unary method that returns its request (1 KiB), over
            TLS with required client certificates (as corral-controlplane's --listen)
    client: N concurrent coroutines (as api_write's), each calling it in a loop for --seconds
    printed: calls/s, p50/p99 latency, CPU-ms per call on each side

If this floor already misses a target (p99 <= 50 ms at 100 clients, or the CPU per call
that a ratio to raw etcd allows), no API server written over Python gRPC can meet it here.

Usage: bench/grpc_floor.py [--clients N] [--seconds S]
The last line is JSON: {"bench", "ours", "peer", "ratio", "unit"} (ours: p99 ms of the echo;
peer: the issue's 50 ms target; there is nothing else to compare it with).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import grpc  # type: ignore[import-untyped]
from grpc import aio

from bench._support import cpu_seconds, percentile
from controlplane.apiserver import pki

METHOD = "/corral.bench.Echo/Echo"


def _identity(b: bytes) -> bytes:
    return b


async def serve(port_file: str, cert: bytes, key: bytes, ca: bytes) -> None:
    server = aio.server()

    async def echo(request: bytes, context: object) -> bytes:
        return request

    handler = grpc.method_handlers_generic_handler("corral.bench.Echo", {
        "Echo": grpc.unary_unary_rpc_method_handler(
            echo, request_deserializer=_identity, response_serializer=_identity)})
    server.add_generic_rpc_handlers((handler,))
    creds = grpc.ssl_server_credentials([(key, cert)], root_certificates=ca,
                                        require_client_auth=True)
    port = server.add_secure_port("127.0.0.1:0", creds)
    await server.start()
    with open(port_file, "w") as f:
        f.write(str(port))
    await server.wait_for_termination()


async def load(port: int, *, clients: int, seconds: float, ca: bytes, cert: bytes,
               key: bytes) -> list[float]:
    creds = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key,
                                         certificate_chain=cert)
    channels = [aio.secure_channel(f"127.0.0.1:{port}", creds,
                                   options=[("grpc.ssl_target_name_override", "localhost")])
                for _ in range(8)]
    calls = [c.unary_unary(METHOD, request_serializer=_identity,
                           response_deserializer=_identity) for c in channels]
    body = b"x" * 1024
    latencies: list[float] = []
    deadline = time.monotonic() + seconds

    async def client(i: int) -> None:
        call = calls[i % len(calls)]
        while time.monotonic() < deadline:
            t = time.monotonic()
            await call(body)
            latencies.append(time.monotonic() - t)

    await asyncio.gather(*(client(i) for i in range(clients)))
    for c in channels:
        await c.close()
    return latencies


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--serve", help=argparse.SUPPRESS)  # the child: PORT_FILE DIR
    args = ap.parse_args()
    if args.serve:
        d = args.serve
        with open(os.path.join(d, "s.crt"), "rb") as f:
            cert = f.read()
        with open(os.path.join(d, "s.key"), "rb") as f:
            key = f.read()
        with open(os.path.join(d, "ca.crt"), "rb") as f:
            ca = f.read()
        asyncio.run(serve(os.path.join(d, "port"), cert, key, ca))
        return 0
    with tempfile.TemporaryDirectory(prefix="corral-bench-grpc-") as d:
        ca = pki.create_ca()
        server_pair = pki.issue(ca, common_name="localhost", dns_names=["localhost"],
                                server=True)
        client_pair = pki.issue(ca, common_name="bench", organizations=["system:masters"],
                                client=True)
        for name, data in (("s.crt", server_pair.cert_pem), ("s.key", server_pair.key_pem),
                           ("ca.crt", ca.cert_pem)):
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)
        proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve", d])
        try:
            port_file = os.path.join(d, "port")
            deadline = time.monotonic() + 30
            while not _read(port_file):
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit("the echo server did not start")
                time.sleep(0.05)
            port = int(_read(port_file))
            server_cpu0, client_cpu0 = cpu_seconds(proc.pid), time.process_time()
            lat = asyncio.run(load(port, clients=args.clients, seconds=args.seconds,
                                   ca=ca.cert_pem, cert=client_pair.cert_pem,
                                   key=client_pair.key_pem))
            server_cpu = cpu_seconds(proc.pid) - server_cpu0
            client_cpu = time.process_time() - client_cpu0
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
    n = len(lat)
    p50, p99 = percentile(lat, 50) * 1000, percentile(lat, 99) * 1000
    print(f"echo over TLS with client certificates, {args.clients} clients, {args.seconds:.0f} s:"
          f" {n / args.seconds:.0f} calls/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms; CPU per call:"
          f" server {server_cpu / n * 1000:.2f} ms, client {client_cpu / n * 1000:.2f} ms")
    print(json.dumps({"bench": "grpc_floor_echo_p99", "ours": round(p99, 1), "peer": 50.0,
                      "ratio": round(p99 / 50.0, 2), "unit": "ms",
                      "calls_per_s": round(n / args.seconds),
                      "server_cpu_ms_per_call": round(server_cpu / n * 1000, 3),
                      "client_cpu_ms_per_call": round(client_cpu / n * 1000, 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
