"""`clusterctl cluster init`: a controlplane's PKI and admin.conf before its first start,
made by the real subprocess (python -m controlplane.apiserver.server init), idempotent,
and refusing to replace a cluster's CA with another."""

from __future__ import annotations

import hashlib
import os
import stat

import pytest
from cryptography import x509

from api import client as api_client
from clusterctl import main
from controlplane.apiserver import pki

FILES = ("pki/ca.crt", "pki/ca.key", "pki/server.crt", "pki/server.key", "pki/admin.crt",
         "pki/admin.key", "admin.conf")


def init(data_dir: str, *extra: str) -> int:
    return main.main(["cluster", "init", "--data-dir", data_dir, *extra])


def digests(data_dir: str) -> dict[str, str]:
    out = {}
    for name in FILES:
        with open(os.path.join(data_dir, name), "rb") as f:
            out[name] = hashlib.sha256(f.read()).hexdigest()
    return out


def cert(path: str) -> x509.Certificate:
    with open(path, "rb") as f:
        return x509.load_pem_x509_certificate(f.read())


def sans(path: str) -> set[str]:
    dns, ips = pki.certificate_sans(cert(path))
    return dns | {str(ip) for ip in ips}


def write_ca(directory: str, name: str) -> tuple[str, str]:
    pair = pki.create_ca(common_name=name)
    crt, key = os.path.join(directory, f"{name}.crt"), os.path.join(directory, f"{name}.key")
    pki.write_keypair(pair, cert_path=crt, key_path=key)
    return crt, key


def test_init_makes_the_first_start_files(tmp_path: object,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    d = os.path.join(str(tmp_path), "cp")
    assert init(d, "--listen", "10.1.2.3:7443", "--tls-san", "api.example.com") == 0
    printed = capsys.readouterr().out
    for name in ("pki/ca.crt", "pki/server.crt", "pki/admin.crt", "admin.conf"):
        assert os.path.join(d, name) in printed
    for name in ("pki/ca.key", "pki/server.key", "pki/admin.key", "admin.conf"):
        assert stat.S_IMODE(os.stat(os.path.join(d, name)).st_mode) == 0o600, name
    ca = cert(os.path.join(d, "pki/ca.crt"))
    for name in ("server", "admin"):
        cert(os.path.join(d, f"pki/{name}.crt")).verify_directly_issued_by(ca)
    assert {"10.1.2.3", "api.example.com", "localhost", "127.0.0.1"} <= sans(
        os.path.join(d, "pki/server.crt"))
    cfg = api_client.load_config(os.path.join(d, "admin.conf"))
    assert cfg.server == "10.1.2.3:7443"
    with open(os.path.join(d, "pki/ca.crt"), "rb") as f:
        assert cfg.ca_pem == f.read()
    with open(os.path.join(d, "pki/admin.crt"), "rb") as f:
        assert cfg.cert_pem == f.read()


def test_a_second_init_changes_nothing(tmp_path: object) -> None:
    d = os.path.join(str(tmp_path), "cp")
    assert init(d, "--tls-san", "a.example") == 0
    before = digests(d)
    assert init(d, "--tls-san", "a.example") == 0
    assert digests(d) == before


def test_a_new_name_reissues_only_the_server_certificate(tmp_path: object) -> None:
    d = os.path.join(str(tmp_path), "cp")
    assert init(d, "--tls-san", "a.example") == 0
    before = digests(d)
    assert init(d, "--tls-san", "b.example") == 0
    after = digests(d)
    changed = {n for n in FILES if before[n] != after[n]}
    assert changed == {"pki/server.crt", "pki/server.key"}
    assert {"a.example", "b.example"} <= sans(os.path.join(d, "pki/server.crt"))


def test_init_adopts_a_given_ca_and_accepts_it_again(tmp_path: object) -> None:
    d = os.path.join(str(tmp_path), "cp")
    crt, key = write_ca(str(tmp_path), "corp-ca")
    assert init(d, "--ca-cert", crt, "--ca-key", key) == 0
    with open(crt, "rb") as a, open(os.path.join(d, "pki/ca.crt"), "rb") as b:
        assert a.read() == b.read()
    cert(os.path.join(d, "pki/admin.crt")).verify_directly_issued_by(cert(crt))
    before = digests(d)
    assert init(d, "--ca-cert", crt, "--ca-key", key) == 0
    assert digests(d) == before


def ca_args(pair: tuple[str, str]) -> list[str]:
    return ["--ca-cert", pair[0], "--ca-key", pair[1]]


@pytest.mark.parametrize("make_args, problem", [
    pytest.param(lambda t, d: ca_args(write_ca(t, "other-ca")),
                 "already has a different CA", id="a-different-ca"),
    pytest.param(lambda t, d: ["--ca-cert", os.path.join(d, "pki/admin.crt"), "--ca-key",
                               os.path.join(d, "pki/admin.key")],
                 "not a CA certificate", id="not-a-ca"),
    pytest.param(lambda t, d: ["--ca-cert", write_ca(t, "lone")[0]],
                 "give both", id="cert-without-key"),
    pytest.param(lambda t, d: ["--tls-san", "not a name"], "not a name", id="bad-san"),
    pytest.param(lambda t, d: ["--listen", "127.0.0.1:0"], "needs the real port",
                 id="port-zero"),
])
def test_refusals_name_the_problem_and_write_nothing(
        tmp_path: object, capsys: pytest.CaptureFixture[str], make_args: object,
        problem: str) -> None:
    t = str(tmp_path)
    d = os.path.join(t, "cp")
    assert init(d) == 0
    before = digests(d)
    capsys.readouterr()
    assert init(d, *make_args(t, d)) == 1  # type: ignore[operator]
    err = capsys.readouterr().err
    assert err.startswith("error: cluster init: ")
    assert problem in err
    assert digests(d) == before


def test_a_ca_is_not_put_beside_certificates_another_ca_signed(tmp_path: object,
                                                             capsys: pytest.CaptureFixture[str],
                                                             ) -> None:
    d = os.path.join(str(tmp_path), "cp")
    assert init(d) == 0
    os.remove(os.path.join(d, "pki/ca.crt"))
    os.remove(os.path.join(d, "pki/ca.key"))
    crt, key = write_ca(str(tmp_path), "late-ca")
    assert init(d, "--ca-cert", crt, "--ca-key", key) == 1
    assert "exists without the CA that signed it" in capsys.readouterr().err
    assert not os.path.exists(os.path.join(d, "pki/ca.crt"))
