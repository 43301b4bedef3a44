"""The cluster CA: real certificates, chains, SANs, file modes, reuse, races, corruption."""

from __future__ import annotations

import multiprocessing
import os
import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from controlplane.apiserver import pki
from controlplane.apiserver.authn import user_from_certificate


def cert(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def read_cert(path: str) -> x509.Certificate:
    return cert(Path(path).read_bytes())


def sans(c: x509.Certificate) -> tuple[set[str], set[str]]:
    dns, ips = pki.certificate_sans(c)
    return dns, {str(ip) for ip in ips}


def eku(c: x509.Certificate) -> set[x509.ObjectIdentifier]:
    return set(c.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


@pytest.fixture(scope="module")
def ca() -> pki.KeyPair:
    return pki.create_ca(common_name="test-ca", days=30)


def test_ca_is_a_p256_ca_that_signs_certificates(ca: pki.KeyPair) -> None:
    c = cert(ca.cert_pem)
    assert c.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "test-ca"
    c.verify_directly_issued_by(c)  # self-signed
    bc = c.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca
    ku = c.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_cert_sign and ku.crl_sign
    key = serialization.load_pem_private_key(ca.key_pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    assert c.public_key() == key.public_key()
    lifetime = c.not_valid_after_utc - c.not_valid_before_utc
    assert 30 <= lifetime.days <= 31


@pytest.mark.parametrize(("kwargs", "want_eku", "want_dns", "want_ips"), [
    pytest.param(dict(server=True, dns_names=["API.example", "localhost"],
                      ip_addresses=["10.0.0.1", "::1"]),
                 {ExtendedKeyUsageOID.SERVER_AUTH}, {"api.example", "localhost"},
                 {"10.0.0.1", "::1"}, id="server"),
    pytest.param(dict(client=True), {ExtendedKeyUsageOID.CLIENT_AUTH}, set(), set(),
                 id="client"),
    pytest.param(dict(client=True, server=True, dns_names=["x"]),
                 {ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH}, {"x"},
                 set(), id="both"),
])
def test_issue_signs_a_leaf_with_its_usages_and_names(
        ca: pki.KeyPair, kwargs: dict[str, object], want_eku: set[x509.ObjectIdentifier],
        want_dns: set[str], want_ips: set[str]) -> None:
    pair = pki.issue(ca, common_name="leaf", organizations=["g1", "g2"],
                     **kwargs)  # type: ignore[arg-type]
    c = cert(pair.cert_pem)
    c.verify_directly_issued_by(cert(ca.cert_pem))
    assert eku(c) == want_eku
    assert sans(c) == (want_dns, want_ips)
    assert not c.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert [a.value for a in c.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] \
        == ["g1", "g2"]
    assert c.not_valid_after_utc <= cert(ca.cert_pem).not_valid_after_utc  # capped by CA
    key = serialization.load_pem_private_key(pair.key_pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and c.public_key() == key.public_key()


def test_a_certificate_from_another_ca_does_not_verify(ca: pki.KeyPair) -> None:
    other = pki.create_ca(common_name="test-ca")  # same name: only the signature differs
    leaf = cert(pki.issue(other, common_name="x", client=True).cert_pem)
    with pytest.raises(InvalidSignature):
        leaf.verify_directly_issued_by(cert(ca.cert_pem))


@pytest.mark.parametrize(("kwargs", "message"), [
    pytest.param(dict(common_name="x"), "must be for server or client", id="no-usage"),
    pytest.param(dict(common_name="", client=True), "common name must not be empty",
                 id="empty-cn"),
    pytest.param(dict(common_name="x", server=True, ip_addresses=["10.0.0.300"]),
                 "'10.0.0.300' is not an IP", id="bad-ip"),
    pytest.param(dict(common_name="x", server=True, dns_names=["bad_name!"]),
                 "'bad_name!' is neither", id="bad-dns"),
    pytest.param(dict(common_name="x", client=True, days=0), "days: must be > 0",
                 id="days"),
])
def test_issue_refuses_bad_requests(ca: pki.KeyPair, kwargs: dict[str, object],
                                    message: str) -> None:
    with pytest.raises(ValueError, match=message):
        pki.issue(ca, **kwargs)  # type: ignore[arg-type]


def test_issue_refuses_a_leaf_as_ca(ca: pki.KeyPair) -> None:
    leaf = pki.issue(ca, common_name="leaf", client=True)
    with pytest.raises(ValueError, match="not a CA certificate"):
        pki.issue(leaf, common_name="x", client=True)


def mode(path: str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_first_start_creates_the_cluster_pki(tmp_path: Path) -> None:
    p = pki.ensure_cluster_pki(str(tmp_path / "data"), hosts=["cp1.example", "192.168.5.10"])
    assert p.dir == str(tmp_path / "data" / "pki")
    assert sorted(os.listdir(p.dir)) == [".lock", "admin.crt", "admin.key", "ca.crt",
                                         "ca.key", "kubelet-client.crt", "kubelet-client.key",
                                         "server.crt", "server.key"]
    for key in (p.ca_key, p.server_key, p.admin_key, p.kubelet_client_key):
        assert mode(key) == 0o600, key
    for crt in (p.ca_cert, p.server_cert, p.admin_cert, p.kubelet_client_cert):
        assert mode(crt) == 0o644, crt
    ca_cert = read_cert(p.ca_cert)
    server = read_cert(p.server_cert)
    server.verify_directly_issued_by(ca_cert)
    assert sans(server) == ({"localhost", "cp1.example"}, {"127.0.0.1", "192.168.5.10"})
    assert eku(server) == {ExtendedKeyUsageOID.SERVER_AUTH}
    admin = read_cert(p.admin_cert)
    admin.verify_directly_issued_by(ca_cert)
    assert eku(admin) == {ExtendedKeyUsageOID.CLIENT_AUTH}
    user = user_from_certificate(Path(p.admin_cert).read_bytes())
    assert (user.name, user.groups) == ("corral-admin", ("system:masters",
                                                         "system:authenticated"))
    kubelet = read_cert(p.kubelet_client_cert)
    kubelet.verify_directly_issued_by(ca_cert)
    assert eku(kubelet) == {ExtendedKeyUsageOID.CLIENT_AUTH}
    user = user_from_certificate(Path(p.kubelet_client_cert).read_bytes())
    assert (user.name, user.groups) == ("kube-apiserver-kubelet-client",
                                        ("system:masters", "system:authenticated"))


def test_an_older_pki_gains_the_kubelet_client_certificate(tmp_path: Path) -> None:
    """A directory made before the kubelet-client pair existed: only the pair is added."""
    p = pki.ensure_cluster_pki(str(tmp_path), hosts=[])
    os.unlink(p.kubelet_client_cert)
    os.unlink(p.kubelet_client_key)
    before = {f: Path(p.dir, f).read_bytes() for f in os.listdir(p.dir)}
    pki.ensure_cluster_pki(str(tmp_path), hosts=[])
    after = {f: Path(p.dir, f).read_bytes() for f in os.listdir(p.dir)}
    assert {f: after[f] for f in before} == before
    assert set(after) - set(before) == {"kubelet-client.crt", "kubelet-client.key"}
    read_cert(p.kubelet_client_cert).verify_directly_issued_by(read_cert(p.ca_cert))


def test_later_starts_reuse_every_file(tmp_path: Path) -> None:
    first = pki.ensure_cluster_pki(str(tmp_path), hosts=["cp1.example"])
    before = {f: Path(first.dir, f).read_bytes() for f in os.listdir(first.dir)}
    again = pki.ensure_cluster_pki(str(tmp_path), hosts=["cp1.example", "LOCALHOST"])
    assert again == first
    assert {f: Path(first.dir, f).read_bytes() for f in os.listdir(first.dir)} == before


def test_a_new_host_reissues_only_the_server_certificate(tmp_path: Path) -> None:
    p = pki.ensure_cluster_pki(str(tmp_path), hosts=["cp1.example"])
    ca_before = Path(p.ca_cert).read_bytes()
    admin_before = Path(p.admin_cert).read_bytes()
    old_serial = read_cert(p.server_cert).serial_number
    pki.ensure_cluster_pki(str(tmp_path), hosts=["cp2.example", "10.1.2.3"])
    server = read_cert(p.server_cert)
    assert server.serial_number != old_serial
    server.verify_directly_issued_by(read_cert(p.ca_cert))
    # the old name stays: clients already configured with it keep working
    assert sans(server) == ({"localhost", "cp1.example", "cp2.example"},
                            {"127.0.0.1", "10.1.2.3"})
    assert Path(p.ca_cert).read_bytes() == ca_before
    assert Path(p.admin_cert).read_bytes() == admin_before
    assert mode(p.server_key) == 0o600
    pki.load_keypair(cert_path=p.server_cert, key_path=p.server_key)  # key matches cert
    assert not [f for f in os.listdir(p.dir) if f.endswith(".tmp")]


def test_wildcard_listen_addresses_are_not_names(tmp_path: Path) -> None:
    p = pki.ensure_cluster_pki(str(tmp_path), hosts=["0.0.0.0", "::", "", "[::1]"])
    assert sans(read_cert(p.server_cert)) == ({"localhost"}, {"127.0.0.1", "::1"})


def test_bad_hosts_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'not a host' is neither"):
        pki.ensure_cluster_pki(str(tmp_path), hosts=["not a host"])
    assert not (tmp_path / "pki").exists()


def _start(data_dir: str, ready: threading.Barrier, out: multiprocessing.Queue[bytes]) -> None:
    ready.wait(30)  # every process has imported everything: start together
    p = pki.ensure_cluster_pki(data_dir, hosts=["cp.example"])
    ca = read_cert(p.ca_cert)
    read_cert(p.server_cert).verify_directly_issued_by(ca)
    read_cert(p.admin_cert).verify_directly_issued_by(ca)
    out.put(Path(p.ca_cert).read_bytes())


def test_processes_starting_at_once_share_one_ca(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")  # no fork of a process that may run grpc
    n = 4
    ready = ctx.Barrier(n)
    out: multiprocessing.Queue[bytes] = ctx.Queue()
    procs = [ctx.Process(target=_start, args=(str(tmp_path), ready, out)) for _ in range(n)]
    for proc in procs:
        proc.start()
    try:
        seen = [out.get(timeout=30) for _ in procs]
    finally:
        for proc in procs:
            proc.join(30)
            if proc.is_alive():
                proc.kill()
                proc.join()
    assert [proc.exitcode for proc in procs] == [0] * n
    on_disk = Path(tmp_path, "pki", "ca.crt").read_bytes()
    assert seen == [on_disk] * n


def test_threads_starting_at_once_share_one_ca(tmp_path: Path) -> None:
    """flock excludes separate open files in one process too: a tighter race."""
    n = 8
    ready = threading.Barrier(n)
    results: list[bytes] = []
    errors: list[BaseException] = []

    def start() -> None:
        ready.wait(10)
        try:
            p = pki.ensure_cluster_pki(str(tmp_path), hosts=["cp.example"])
            ca = read_cert(p.ca_cert)
            read_cert(p.server_cert).verify_directly_issued_by(ca)
            results.append(Path(p.ca_cert).read_bytes())
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=start) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert results == [Path(tmp_path, "pki", "ca.crt").read_bytes()] * n


@pytest.mark.parametrize("case", [
    pytest.param("garbage-ca-cert", id="garbage-ca-cert"),
    pytest.param("garbage-server-key", id="garbage-server-key"),
    pytest.param("swapped-admin-key", id="admin-key-of-another-cert"),
    pytest.param("foreign-server", id="server-pair-from-another-ca"),
    pytest.param("foreign-ca-key", id="ca-key-of-another-ca"),
])
def test_a_corrupt_or_mismatched_file_is_an_error_naming_it(tmp_path: Path,
                                                            case: str) -> None:
    p = pki.ensure_cluster_pki(str(tmp_path / "data"), hosts=[])
    other = pki.ensure_cluster_pki(str(tmp_path / "other"), hosts=[])
    if case == "garbage-ca-cert":
        Path(p.ca_cert).write_bytes(b"-----BEGIN CERTIFICATE-----\nnope\n")
        path, message = p.ca_cert, "not a PEM certificate"
    elif case == "garbage-server-key":
        Path(p.server_key).write_bytes(b"\x00" * 40)
        path, message = p.server_key, "not an unencrypted PEM private key"
    elif case == "swapped-admin-key":
        Path(p.admin_key).write_bytes(Path(p.server_key).read_bytes())
        path, message = p.admin_key, f"does not match the certificate {p.admin_cert}"
    elif case == "foreign-server":
        Path(p.server_cert).write_bytes(Path(other.server_cert).read_bytes())
        Path(p.server_key).write_bytes(Path(other.server_key).read_bytes())
        path, message = p.server_cert, f"not issued by the cluster CA {p.ca_cert}"
    else:
        Path(p.ca_key).write_bytes(Path(other.ca_key).read_bytes())
        path, message = p.ca_key, "does not match the certificate"
    before = {f: Path(p.dir, f).read_bytes() for f in os.listdir(p.dir)}
    with pytest.raises(pki.PKIError) as err:
        pki.ensure_cluster_pki(str(tmp_path / "data"), hosts=["new.example"])
    assert str(err.value).startswith(path + ": ") and message in str(err.value)
    # nothing was replaced, not even the server certificate that lacks the new host
    assert {f: Path(p.dir, f).read_bytes() for f in os.listdir(p.dir)} == before


@pytest.mark.parametrize("missing", [
    pytest.param("ca_cert", id="ca-cert"),
    pytest.param("server_key", id="server-key"),
    pytest.param("admin_cert", id="admin-cert"),
    pytest.param("kubelet_client_key", id="kubelet-client-key"),
])
def test_half_a_pair_is_an_error_not_a_new_pair(tmp_path: Path, missing: str) -> None:
    p = pki.ensure_cluster_pki(str(tmp_path), hosts=[])
    os.unlink(getattr(p, missing))
    with pytest.raises(pki.PKIError, match=f"^{getattr(p, missing)}: missing while "):
        pki.ensure_cluster_pki(str(tmp_path), hosts=[])
    assert not os.path.exists(getattr(p, missing))


def test_node_and_client_credentials_carry_kubernetes_identities(tmp_path: Path) -> None:
    p = pki.ensure_cluster_pki(str(tmp_path), hosts=[])
    ca_cert = read_cert(p.ca_cert)
    node = pki.node_credentials(p, "worker-1")
    cert(node.cert_pem).verify_directly_issued_by(ca_cert)
    # client auth to the API server; server auth for its node API, named by the node
    assert eku(cert(node.cert_pem)) == {ExtendedKeyUsageOID.CLIENT_AUTH,
                                        ExtendedKeyUsageOID.SERVER_AUTH}
    assert sans(cert(node.cert_pem)) == ({"worker-1"}, set())
    user = user_from_certificate(node.cert_pem)
    assert (user.name, user.groups) == ("system:node:worker-1",
                                        ("system:nodes", "system:authenticated"))
    alice = pki.client_credentials(p, user="alice", groups=["corral:view", "dev"])
    cert(alice.cert_pem).verify_directly_issued_by(ca_cert)
    assert user_from_certificate(alice.cert_pem).groups == ("corral:view", "dev",
                                                            "system:authenticated")
    with pytest.raises(ValueError, match="Worker_1"):
        pki.node_credentials(p, "Worker_1")
    with pytest.raises(ValueError, match="user: must not be empty"):
        pki.client_credentials(p, user="", groups=[])


def test_the_certificates_work_in_a_real_mutual_tls_handshake(tmp_path: Path) -> None:
    """Python's ssl (OpenSSL) accepts the server by name and IP and the client cert."""
    p = pki.ensure_cluster_pki(str(tmp_path), hosts=[])
    node = pki.node_credentials(p, "n1")
    Path(tmp_path, "n1.crt").write_bytes(node.cert_pem)
    Path(tmp_path, "n1.key").write_bytes(node.key_pem)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(p.server_cert, p.server_key)
    server_ctx.load_verify_locations(p.ca_cert)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    client_ctx = ssl.create_default_context(cafile=p.ca_cert)
    client_ctx.load_cert_chain(str(tmp_path / "n1.crt"), str(tmp_path / "n1.key"))

    def handshake(host: str) -> bytes | None:
        """Connect as HOST; the client certificate the server saw, None if refused."""
        a, b = socket.socketpair()
        peer: list[bytes] = []

        def serve() -> None:
            try:
                with server_ctx.wrap_socket(b, server_side=True) as s:
                    der = s.getpeercert(binary_form=True)
                    assert der is not None
                    peer.append(x509.load_der_x509_certificate(der).public_bytes(
                        serialization.Encoding.PEM))
            except (ssl.SSLError, OSError):
                pass

        t = threading.Thread(target=serve)
        t.start()
        try:
            with client_ctx.wrap_socket(a, server_hostname=host):
                pass
        except ssl.SSLCertVerificationError:
            return None
        finally:
            a.close()
            t.join(10)
            b.close()
        return peer[0]

    for host in ("localhost", "127.0.0.1"):
        seen = handshake(host)
        assert seen is not None and user_from_certificate(seen).name == "system:node:n1"
    assert handshake("elsewhere.example") is None
