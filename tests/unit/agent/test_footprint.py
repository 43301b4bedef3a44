"""The idle node's memory footprint, guarded where it is decided: at import time.

An idle corral-agent or corral-runtimed must not load what only some calls use
(cryptography, prometheus_client, websockets, httpx: 1.5 to 9 MB of RSS each, measured
with bench/node_footprint.py). Each check runs a fresh interpreter, so what an earlier
test imported cannot hide a regression. The node API's certificate reader, which replaced
cryptography there, is checked against cryptography's own reading of the same certificates.
"""

from __future__ import annotations

import datetime
import os
import ssl
import subprocess
import sys
import textwrap
from collections.abc import Callable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agent import nodeapi

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))


def loaded_after(code: str) -> set[str]:
    """Top-level package names in sys.modules after CODE runs in a fresh interpreter."""
    probe = code + "\nimport sys\nprint(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=True)
    return set(out.stdout.split())


HEAVY = ("cryptography", "prometheus_client", "websockets", "httpx")


@pytest.mark.parametrize("module", [
    pytest.param("agent.main", id="corral-agent"),
    pytest.param("runtime.service.daemon", id="corral-runtimed"),
])
def test_daemons_do_not_import_what_only_some_calls_use(module: str) -> None:
    got = loaded_after(f"import {module}")
    assert module.split(".")[0] in got  # the probe saw the import
    assert not got & set(HEAVY), f"import {module} loads {sorted(got & set(HEAVY))}"


def test_metrics_still_load_prometheus_client_when_asked() -> None:
    """The lazy path works: what --http-listen imports brings prometheus_client in."""
    got = loaded_after("import agent.main\nfrom agent.metrics import agent, cadvisor, server")
    assert "prometheus_client" in got


def test_stream_server_starts_websockets_on_its_first_connection() -> None:
    """corral-runtimed's streaming port listens from start(); websockets loads only when a
    client connects, and that first client (waiting in the backlog meanwhile) is answered:
    here a 404 for a token that was never issued."""
    code = textwrap.dedent("""
        import asyncio, sys, tempfile
        from runtime.service.streaming import StreamServer

        async def main():
            with tempfile.TemporaryDirectory() as d:
                s = StreamServer("127.0.0.1:0", scratch_dir=d + "/streams")
                await s.start()
                before = "websockets" in sys.modules
                r, w = await asyncio.open_connection("127.0.0.1", s.port)
                w.write(b"GET /exec/nope HTTP/1.1\\r\\nHost: x\\r\\nUpgrade: websocket\\r\\n"
                        b"Connection: Upgrade\\r\\nSec-WebSocket-Key: "
                        b"dGhlIHNhbXBsZSBub25jZQ==\\r\\nSec-WebSocket-Version: 13\\r\\n\\r\\n")
                status = await asyncio.wait_for(r.readline(), 10)
                w.close()
                await s.close()
                print(before, "websockets" in sys.modules, status.decode().strip())

        asyncio.run(main())
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    before, after, *status = out.stdout.split()
    assert (before, after) == ("False", "True")
    assert status[:2] == ["HTTP/1.1", "404"], status


# ---- the node API's subject reader against cryptography -----------------------------------


def certificate(subject: list[x509.NameAttribute[str]]) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name(subject))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "corral-ca")]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


CN, ORG, OU = NameOID.COMMON_NAME, NameOID.ORGANIZATION_NAME, NameOID.ORGANIZATIONAL_UNIT_NAME
BMP = x509.name._ASN1Type.BMPString
PRINTABLE = x509.name._ASN1Type.PrintableString


@pytest.mark.parametrize(("subject", "want"), [
    pytest.param([x509.NameAttribute(CN, "admin"), x509.NameAttribute(ORG, "system:masters")],
                 ("admin", ["system:masters"]), id="cn-and-group"),
    pytest.param([x509.NameAttribute(ORG, "a"), x509.NameAttribute(ORG, "system:masters"),
                  x509.NameAttribute(CN, "two-groups")],
                 ("two-groups", ["a", "system:masters"]), id="several-groups-in-order"),
    pytest.param([x509.NameAttribute(ORG, "system:nodes")], ("", ["system:nodes"]),
                 id="no-common-name"),
    pytest.param([x509.NameAttribute(CN, "x" * 60), x509.NameAttribute(OU, "y" * 60),
                  x509.NameAttribute(ORG, "z" * 60)],
                 ("x" * 60, ["z" * 60]), id="long-form-lengths"),
    pytest.param([x509.NameAttribute(CN, "ünïcode-ü"), x509.NameAttribute(ORG, "grüppe")],
                 ("ünïcode-ü", ["grüppe"]), id="utf8"),
    pytest.param([x509.NameAttribute(CN, "bmp-name", _type=BMP),
                  x509.NameAttribute(ORG, "printable", _type=PRINTABLE)],
                 ("bmp-name", ["printable"]), id="bmp-and-printable-strings"),
])
def test_groups_of_reads_the_subject_as_cryptography_does(
        subject: list[x509.NameAttribute[str]], want: tuple[str, list[str]]) -> None:
    pem = certificate(subject)
    got = nodeapi.groups_of(pem)
    assert got == want
    parsed = x509.load_pem_x509_certificate(pem).subject
    theirs = ([str(a.value) for a in parsed.get_attributes_for_oid(CN)][:1] or [""])[0]
    assert got == (theirs, [str(a.value) for a in parsed.get_attributes_for_oid(ORG)])


def _der(pem: bytes) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pem.decode())


def _pem(der: bytes) -> bytes:
    return ssl.DER_cert_to_PEM_cert(der).encode()


def _retag(der: bytes, pos: int, tag: int) -> bytes:
    return der[:pos] + bytes((tag,)) + der[pos + 1:]


def _tbs_at(der: bytes) -> int:
    return 2 + (der[1] & 0x7F if der[1] & 0x80 else 0)


@pytest.mark.parametrize(("break_it", "message"), [
    pytest.param(lambda der: b"", "not PEM", id="not-pem"),
    pytest.param(lambda der: der[:40], "Certificate: [0-9]+ bytes past the end", id="truncated"),
    pytest.param(lambda der: _retag(der, _tbs_at(der), 0x31),
                 "tbsCertificate: expected tag 0x30, got tag 0x31", id="tbs-not-a-sequence"),
    pytest.param(lambda der: _retag(der, der.index(b"\x55\x04\x0a") - 2, 0x05),
                 "subject: attribute type: expected tag 0x06, got tag 0x05",
                 id="subject-attribute-type-not-an-oid"),
])
def test_groups_of_names_the_broken_part(break_it: Callable[[bytes], bytes],
                                         message: str) -> None:
    der = break_it(_der(certificate([x509.NameAttribute(CN, "n"),
                                     x509.NameAttribute(ORG, "g")])))
    pem = _pem(der) if der else b"not a certificate"
    with pytest.raises(ValueError, match=f"^certificate: {message}"):
        nodeapi.groups_of(pem)


@pytest.mark.parametrize(("groups", "code"), [
    pytest.param(["system:masters"], None, id="allowed"),
    pytest.param(["system:nodes"], "PERMISSION_DENIED", id="other-group"),
])
def test_authorize_uses_the_subject_reader(groups: list[str], code: str | None) -> None:
    pem = certificate([x509.NameAttribute(CN, "caller"),
                       *(x509.NameAttribute(ORG, g) for g in groups)])
    ctx = {"x509_pem_cert": [pem]}
    if code is None:
        assert nodeapi.authorize(ctx, node="n1") == "caller"
        return
    with pytest.raises(nodeapi.NodeAPIError) as err:
        nodeapi.authorize(ctx, node="n1")
    assert err.value.code.name == code and "caller" in str(err.value)


def test_authorize_turns_an_unreadable_certificate_into_unauthenticated() -> None:
    with pytest.raises(nodeapi.NodeAPIError) as err:
        nodeapi.authorize({"x509_pem_cert": [b"garbage"]}, node="n1")
    assert err.value.code.name == "UNAUTHENTICATED"
    assert "node n1: client certificate: not PEM" in str(err.value)
