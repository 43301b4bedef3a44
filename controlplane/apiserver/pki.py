"""The cluster's certificate authority and the certificates it signs.

::

    ensure_cluster_pki(DATA_DIR, hosts=[...])          under flock(pki/.lock)
      ├── ca.crt / ca.key          create_ca()          ECDSA P-256, CA:TRUE, keyCertSign
      ├── server.crt / server.key  issue(server=True)   SANs: localhost, 127.0.0.1, hosts
      ├── admin.crt / admin.key    issue(client=True)   CN=corral-admin, O=system:masters
      └── kubelet-client.crt/.key  issue(client=True)   CN=kube-apiserver-kubelet-client,
                                                        O=system:masters (the controlplane
                                                        dialing an agent's node API)
    node_credentials(pki, "n1")    CN=system:node:n1, O=system:nodes     (not written)
                                   server and client auth, DNS SAN n1: the agent presents it
                                   to the controlplane and serves its node API with it
    client_credentials(pki, ...)   CN=<user>, O=<groups>                 (not written)

Subjects follow Kubernetes: the common name is the user name and each organization is a
group, so authn.user_from_certificate() reads an identity straight back out of a verified
client certificate. Files are written atomically (temp file in the same directory, fsync,
rename; keys 0600), so a reader never sees half a file. Existing files are reused; a file
that does not parse, a key that does not match its certificate or a certificate the CA
did not sign is a PKIError naming the file, never silently replaced. The server
certificate is re-issued, keeping its names, when ``hosts`` asks for one it lacks
(wildcard listen addresses such as 0.0.0.0, :: and "" are not names and are skipped).
"""

from __future__ import annotations

import datetime
import fcntl
import ipaddress
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ADMIN_USER = "corral-admin"
MASTERS_GROUP = "system:masters"
NODES_GROUP = "system:nodes"
NODE_USER_PREFIX = "system:node:"
SERVER_COMMON_NAME = "corral-apiserver"
KUBELET_CLIENT_USER = "kube-apiserver-kubelet-client"
DEFAULT_HOSTS = ("localhost", "127.0.0.1")
CLOCK_SKEW = datetime.timedelta(minutes=5)  # notBefore is backdated by this much

_DNS_NAME = re.compile(r"^(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")
_IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class PKIError(Exception):
    """A certificate or key file that cannot be used as it is."""


@dataclass(frozen=True)
class KeyPair:
    cert_pem: bytes
    key_pem: bytes


@dataclass(frozen=True)
class ClusterPKI:
    """Paths of the cluster's PKI files."""

    dir: str
    ca_cert: str
    ca_key: str
    server_cert: str
    server_key: str
    admin_cert: str
    admin_key: str
    kubelet_client_cert: str
    kubelet_client_key: str

    @classmethod
    def at(cls, pki_dir: str) -> ClusterPKI:
        j = os.path.join
        return cls(dir=pki_dir, ca_cert=j(pki_dir, "ca.crt"), ca_key=j(pki_dir, "ca.key"),
                   server_cert=j(pki_dir, "server.crt"), server_key=j(pki_dir, "server.key"),
                   admin_cert=j(pki_dir, "admin.crt"), admin_key=j(pki_dir, "admin.key"),
                   kubelet_client_cert=j(pki_dir, "kubelet-client.crt"),
                   kubelet_client_key=j(pki_dir, "kubelet-client.key"))


# --- making certificates (pure) ------------------------------------------------------------


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _name(common_name: str, organizations: Sequence[str] = ()) -> x509.Name:
    if not common_name:
        raise ValueError("certificate subject: common name must not be empty")
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    return x509.Name([*attrs, x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def create_ca(*, common_name: str = "corral-ca", days: int = 3650) -> KeyPair:
    """A self-signed ECDSA P-256 certificate authority valid for DAYS."""
    if days <= 0:
        raise ValueError(f"CA {common_name}: days: must be > 0, got {days}")
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    subject = _name(common_name)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def _parse_ip(value: str) -> _IPAddress | None:
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def _check_dns_name(name: str) -> str:
    lowered = name.lower()
    if len(lowered) > 253 or not _DNS_NAME.match(lowered):
        raise ValueError(f"certificate SAN: {name!r} is neither an IP address nor a DNS name")
    return lowered


def issue(ca: KeyPair, *, common_name: str, organizations: Sequence[str] = (),
          dns_names: Sequence[str] = (), ip_addresses: Sequence[str] = (),
          server: bool = False, client: bool = False, days: int = 365) -> KeyPair:
    """A new ECDSA P-256 key and a certificate for it signed by CA.

    SERVER and CLIENT set the extended key usages (at least one is required); the
    certificate never outlives the CA that signs it.
    """
    if not (server or client):
        raise ValueError(f"certificate {common_name}: must be for server or client auth")
    if days <= 0:
        raise ValueError(f"certificate {common_name}: days: must be > 0, got {days}")
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ValueError("CA key: must be an ECDSA or RSA key")
    if not _is_ca(ca_cert):
        raise ValueError(f"CA {ca_cert.subject.rfc4514_string()}: not a CA certificate")
    if not _same_public_key(ca_cert, ca_key):
        raise ValueError("CA key: does not match the CA certificate")
    ips: list[_IPAddress] = []
    for value in ip_addresses:
        ip = _parse_ip(value)
        if ip is None:
            raise ValueError(f"certificate {common_name}: ip_addresses: {value!r} is not an IP")
        ips.append(ip)
    dns = [_check_dns_name(n) for n in dns_names]

    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    not_after = min(now + datetime.timedelta(days=days), ca_cert.not_valid_after_utc)
    usages = [ExtendedKeyUsageOID.SERVER_AUTH] if server else []
    usages += [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, organizations))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=False,
            crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            ca_key.public_key()), critical=False)
    )
    if dns or ips:
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns]
        sans += [x509.IPAddress(ip) for ip in ips]
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _same_public_key(cert: x509.Certificate, key: object) -> bool:
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    public_key = getattr(key, "public_key", None)
    if public_key is None:
        return False
    return bool(cert.public_key().public_bytes(*fmt) == public_key().public_bytes(*fmt))


def certificate_sans(cert: x509.Certificate) -> tuple[set[str], set[_IPAddress]]:
    """The DNS names (lower case) and IP addresses a certificate is valid for."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set(), set()
    ips = {ip for ip in ext.get_values_for_type(x509.IPAddress)
           if isinstance(ip, ipaddress.IPv4Address | ipaddress.IPv6Address)}
    return {n.lower() for n in ext.get_values_for_type(x509.DNSName)}, ips


# --- files ---------------------------------------------------------------------------------


def write_atomic(path: str, data: bytes, *, mode: int) -> None:
    """Replace PATH with DATA: temp file in the same directory, fsync, rename, fsync dir."""
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.",
                               suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_keypair(pair: KeyPair, *, cert_path: str, key_path: str) -> None:
    """Write a key (0600) and then its certificate (0644), each atomically."""
    write_atomic(key_path, pair.key_pem, mode=0o600)
    write_atomic(cert_path, pair.cert_pem, mode=0o644)


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise PKIError(f"{path}: cannot read: {e.strerror}") from e


def load_certificate(path: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(_read(path))
    except ValueError as e:
        raise PKIError(f"{path}: not a PEM certificate: {e}") from e


def load_keypair(*, cert_path: str, key_path: str) -> KeyPair:
    """Read a certificate and its key, checking that they belong together."""
    cert_pem, key_pem = _read(cert_path), _read(key_path)
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as e:
        raise PKIError(f"{cert_path}: not a PEM certificate: {e}") from e
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as e:
        raise PKIError(f"{key_path}: not an unencrypted PEM private key: {e}") from e
    if not _same_public_key(cert, key):
        raise PKIError(f"{key_path}: does not match the certificate {cert_path}")
    return KeyPair(cert_pem, key_pem)


@contextmanager
def _locked(lock_path: str) -> Iterator[None]:
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the last descriptor releases the lock


# --- the cluster's PKI ---------------------------------------------------------------------


def _split_hosts(hosts: Sequence[str]) -> tuple[set[str], set[_IPAddress]]:
    """The server's SANs: the defaults plus HOSTS, skipping wildcard listen addresses."""
    dns: set[str] = set()
    ips: set[_IPAddress] = set()
    for host in (*DEFAULT_HOSTS, *hosts):
        if not host:
            continue  # the host of a listen address like ":6443"
        ip = _parse_ip(host.strip("[]"))
        if ip is None:
            dns.add(_check_dns_name(host))
        elif not ip.is_unspecified:  # 0.0.0.0 and :: name no server
            ips.add(ip)
    return dns, ips


def _existing(cert_path: str, key_path: str) -> bool:
    """Whether the pair exists; half a pair is an error (never replace a lone key)."""
    have_cert, have_key = os.path.exists(cert_path), os.path.exists(key_path)
    if have_cert != have_key:
        present, missing = (cert_path, key_path) if have_cert else (key_path, cert_path)
        raise PKIError(f"{missing}: missing while {present} exists; restore it or remove both")
    return have_cert


def _load_signed(ca: KeyPair, ca_path: str, *, cert_path: str, key_path: str) -> KeyPair:
    pair = load_keypair(cert_path=cert_path, key_path=key_path)
    cert = x509.load_pem_x509_certificate(pair.cert_pem)
    try:
        cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca.cert_pem))
    except (ValueError, TypeError, InvalidSignature) as e:
        raise PKIError(f"{cert_path}: not issued by the cluster CA {ca_path}") from e
    return pair


def _ip_sort_key(ip: _IPAddress) -> tuple[int, int]:
    return ip.version, int(ip)


def ensure_cluster_pki(data_dir: str, *, hosts: Sequence[str]) -> ClusterPKI:
    """Create DATA_DIR/pki at first start, reuse it later; see the module docstring.

    Every existing file is checked before anything is written, so a bad file leaves the
    directory exactly as it was.
    """
    want_dns, want_ips = _split_hosts(hosts)  # refuse bad names before touching the disk
    pki = ClusterPKI.at(os.path.join(data_dir, "pki"))
    os.makedirs(pki.dir, mode=0o700, exist_ok=True)
    with _locked(os.path.join(pki.dir, ".lock")):
        have_ca = _existing(pki.ca_cert, pki.ca_key)
        have_server = _existing(pki.server_cert, pki.server_key)
        have_admin = _existing(pki.admin_cert, pki.admin_key)
        have_kubelet = _existing(pki.kubelet_client_cert, pki.kubelet_client_key)
        if have_ca:
            ca = load_keypair(cert_path=pki.ca_cert, key_path=pki.ca_key)
            if not _is_ca(x509.load_pem_x509_certificate(ca.cert_pem)):
                raise PKIError(f"{pki.ca_cert}: not a CA certificate (basicConstraints)")
        elif have_server or have_admin or have_kubelet:
            raise PKIError(f"{pki.ca_cert}: missing while certificates it signed exist; "
                           "restore it or remove the whole directory")
        else:
            ca = create_ca()
        reissue_server = not have_server
        if have_server:
            server = _load_signed(ca, pki.ca_cert, cert_path=pki.server_cert,
                                  key_path=pki.server_key)
            have_dns, have_ips = certificate_sans(x509.load_pem_x509_certificate(
                server.cert_pem))
            reissue_server = not (want_dns <= have_dns and want_ips <= have_ips)
            want_dns |= have_dns  # keep the names clients already use
            want_ips |= have_ips
        if have_admin:
            _load_signed(ca, pki.ca_cert, cert_path=pki.admin_cert, key_path=pki.admin_key)
        if have_kubelet:
            _load_signed(ca, pki.ca_cert, cert_path=pki.kubelet_client_cert,
                         key_path=pki.kubelet_client_key)

        if not have_ca:
            write_keypair(ca, cert_path=pki.ca_cert, key_path=pki.ca_key)
        if reissue_server:
            ips = [str(ip) for ip in sorted(want_ips, key=_ip_sort_key)]
            server = issue(ca, common_name=SERVER_COMMON_NAME, dns_names=sorted(want_dns),
                           ip_addresses=ips, server=True)
            write_keypair(server, cert_path=pki.server_cert, key_path=pki.server_key)
        if not have_admin:
            admin = issue(ca, common_name=ADMIN_USER, organizations=[MASTERS_GROUP],
                          client=True)
            write_keypair(admin, cert_path=pki.admin_cert, key_path=pki.admin_key)
        if not have_kubelet:
            kubelet = issue(ca, common_name=KUBELET_CLIENT_USER, organizations=[MASTERS_GROUP],
                            client=True)
            write_keypair(kubelet, cert_path=pki.kubelet_client_cert,
                          key_path=pki.kubelet_client_key)
    return pki


def load_ca(pki: ClusterPKI) -> KeyPair:
    return load_keypair(cert_path=pki.ca_cert, key_path=pki.ca_key)


def node_credentials(pki: ClusterPKI, node_name: str) -> KeyPair:
    """The certificate of the agent of NODE_NAME (Kubernetes' node identity): client auth
    to the API server, and server auth (DNS SAN NODE_NAME) for its node API, which the
    controlplane dials with the TLS name NODE_NAME whatever the node's address."""
    _check_dns_name(node_name)
    if node_name.startswith("*") or node_name != node_name.lower():
        raise ValueError(f"node {node_name!r}: name must be a lower-case DNS subdomain")
    return issue(load_ca(pki), common_name=NODE_USER_PREFIX + node_name,
                 organizations=[NODES_GROUP], dns_names=[node_name], server=True,
                 client=True)


def client_credentials(pki: ClusterPKI, *, user: str, groups: Sequence[str]) -> KeyPair:
    """A client certificate for USER in GROUPS (CN=user, one O per group)."""
    if not user:
        raise ValueError("client credentials: user: must not be empty")
    if any(not g for g in groups):
        raise ValueError(f"client credentials for {user}: groups: an entry is empty")
    return issue(load_ca(pki), common_name=user, organizations=list(groups), client=True)
