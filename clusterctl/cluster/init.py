"""`cluster init`: the controlplane's first-start files, made before its first start.

    clusterctl cluster init --data-dir DIR [--listen HOST:PORT] [--tls-san NAME]...
                            [--ca-cert FILE --ca-key FILE]
        └─► python -m controlplane.apiserver.server init ...   (a process: clusterctl
            imports only `api`)  ─► ensure_cluster_pki(DIR) + DIR/admin.conf
                DIR/pki/ca.{crt,key}       the cluster CA (made, or FILE's, or kept)
                DIR/pki/server.{crt,key}   SANs: localhost, 127.0.0.1, HOST, NAME...
                DIR/pki/admin.{crt,key}    CN=corral-admin, O=system:masters
                DIR/admin.conf             a clusterctl config for the admin at HOST:PORT

Idempotent: a second run keeps every file (new --tls-san names re-issue the server
certificate only). A --ca-cert other than the CA DIR already has is refused, and nothing is
written. `corral-controlplane --data-dir DIR` then starts with these files.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from typing import TextIO

INIT_MODULE = "controlplane.apiserver.server"
_PREFIX = "corral-controlplane init: "


class InitError(RuntimeError):
    """The PKI could not be made; the message names the file or flag."""


def command(*, data_dir: str, listen: str, tls_sans: Sequence[str] = (),
            ca_cert: str = "", ca_key: str = "") -> list[str]:
    """The command line that makes the files (this interpreter, absolute paths)."""
    argv = [sys.executable, "-m", INIT_MODULE, "init", "--data-dir",
            os.path.abspath(data_dir), "--listen", listen]
    for name in tls_sans:
        argv += ["--tls-san", name]
    if ca_cert:
        argv += ["--ca-cert", os.path.abspath(ca_cert)]
    if ca_key:
        argv += ["--ca-key", os.path.abspath(ca_key)]
    return argv


def init(*, data_dir: str, listen: str, tls_sans: Sequence[str] = (), ca_cert: str = "",
         ca_key: str = "", out: TextIO, timeout: float = 60) -> None:
    """Make (or check) DATA_DIR's PKI and admin.conf; prints each file to OUT."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (root, os.environ.get("PYTHONPATH", "")) if p)}  # a source checkout
    try:
        proc = subprocess.run(command(data_dir=data_dir, listen=listen, tls_sans=tls_sans,
                                      ca_cert=ca_cert, ca_key=ca_key),
                              capture_output=True, text=True, timeout=timeout, env=env,
                              stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired:
        raise InitError(f"{data_dir}: making the PKI took over {timeout:.0f}s") from None
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        why = lines[-1].removeprefix(_PREFIX) if lines else f"exit {proc.returncode}"
        raise InitError(why)
    out.write(proc.stdout)
