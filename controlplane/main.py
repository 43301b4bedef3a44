"""corral-controlplane: the API server (and, once elected, the scheduler and controllers).

    corral-controlplane --etcd-endpoints URL[,URL...] --listen HOST:PORT --data-dir DIR
                        [--http-listen HOST:PORT] [--token-file F --token-listen HOST:PORT]
                        [--encryption-config F]
                        [--tls-san NAME]... [--insecure]

Writes DIR/admin.conf (a clusterctl config for the admin) once it serves.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from controlplane.storage.errors import StorageError


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="corral-controlplane", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--etcd-endpoints", required=True,
                   help="comma-separated etcd client URLs (http://127.0.0.1:2379)")
    p.add_argument("--listen", default="127.0.0.1:6443", help="gRPC (TLS) address")
    p.add_argument("--http-listen", default="127.0.0.1:6444",
                   help="plain HTTP address for /healthz, /readyz and /metrics")
    p.add_argument("--data-dir", required=True, help="PKI and admin.conf live here")
    p.add_argument("--token-file", default="", help="static bearer tokens (CSV: "
                   "token,user,uid,\"group1,group2\")")
    p.add_argument("--token-listen", default="", help="TLS address for bearer-token "
                   "clients (--listen requires client certificates)")
    p.add_argument("--encryption-config", default="",
                   help="Kubernetes EncryptionConfiguration with aesgcm keys for secrets")
    p.add_argument("--tls-san", action="append", default=[],
                   help="another name or IP for the server certificate (repeatable)")
    p.add_argument("--leader-elect", default="true", choices=("true", "false"),
                   help="campaign to run the scheduler and controllers (default true)")
    p.add_argument("--insecure", action="store_true",
                   help="plain gRPC without authentication (loopback testing only)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


async def run(args: argparse.Namespace) -> int:
    from controlplane.apiserver.server import APIServer, Options

    server = APIServer(Options(
        etcd_endpoints=[u for u in args.etcd_endpoints.split(",") if u],
        data_dir=args.data_dir, listen=args.listen, http_listen=args.http_listen,
        hosts=args.tls_san, token_file=args.token_file, token_listen=args.token_listen,
        encryption_config=args.encryption_config, insecure=args.insecure,
        leader_elect=args.leader_elect == "true"))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    print(f"corral-controlplane: serving on port {server.port}, HTTP on port "
          f"{server.http_port}", file=sys.stderr, flush=True)
    await stop.wait()
    await server.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        return asyncio.run(run(args))
    except (StorageError, OSError, ValueError) as err:
        print(f"corral-controlplane: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
