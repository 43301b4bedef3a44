"""TLS, client certificates, bearer tokens and roles, against a real corral-controlplane
and etcd; and secrets encrypted at rest as etcd stores them."""

from __future__ import annotations

import base64
import os
import stat
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from api import errors as e
from api.client import Client, ClientConfig, load_config
from controlplane.apiserver import pki
from tests.support.controlplane import ControlPlane

VIEW_TOKEN = "view-token-0123456789"
ADMIN_TOKEN = "admin-token-9876543210"


@pytest.fixture
def cp(etcd_endpoint: str, tmp_path: Any) -> Iterator[ControlPlane]:
    tokens = tmp_path / "tokens.csv"
    tokens.write_text(f'{VIEW_TOKEN},alice,u1,"corral:view"\n'
                      f'{ADMIN_TOKEN},root,u2,"system:masters"\n')
    key = base64.b64encode(b"k" * 32).decode()
    enc = tmp_path / "encryption.yaml"
    enc.write_text("apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\n"
                   "resources:\n- resources: [secrets]\n  providers:\n  - aesgcm:\n"
                   f"      keys:\n      - name: key1\n        secret: {key}\n"
                   "  - identity: {}\n")
    with ControlPlane(etcd_endpoint, args=("--token-file", str(tokens),
                                           "--encryption-config", str(enc))) as server:
        yield server


def with_token(cp: ControlPlane, token: str) -> Client:
    admin = cp.config()
    return Client(ClientConfig(server=f"127.0.0.1:{cp.token_port}", ca_pem=admin.ca_pem,
                               token=token))


def node_client(cp: ControlPlane, node: str) -> Client:
    admin = cp.config()
    pair = pki.node_credentials(pki.ClusterPKI.at(os.path.join(cp.data_dir, "pki")), node)
    return Client(ClientConfig(server=admin.server, ca_pem=admin.ca_pem,
                               cert_pem=pair.cert_pem, key_pem=pair.key_pem))


def pod(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}}


def bind(c: Client, name: str, node: str) -> None:
    c.create("pods", {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                      "target": {"name": node}}, namespace="default", subresource="binding")


def test_admin_conf_is_private_and_works(cp: ControlPlane) -> None:
    path = os.path.join(cp.data_dir, "admin.conf")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    cfg = load_config(path)
    assert cfg.cert_pem and cfg.ca_pem and not cfg.insecure
    with Client(cfg) as c:
        assert c.create("pods", pod("p"), namespace="default")["metadata"]["uid"]


def test_no_credentials_is_unauthorized(cp: ControlPlane) -> None:
    with with_token(cp, "") as c, pytest.raises(e.APIError) as info:
        c.list("pods", namespace="default")
    assert info.value.reason is e.Reason.UNAUTHORIZED
    with with_token(cp, "wrong-token") as c, pytest.raises(e.APIError) as info:
        c.list("pods", namespace="default")
    assert info.value.reason is e.Reason.UNAUTHORIZED
    assert "wrong-token" not in str(info.value)


def test_untrusted_server_certificate_is_refused(cp: ControlPlane) -> None:
    other_ca = pki.create_ca()
    cfg = cp.config()
    with Client(ClientConfig(server=f"127.0.0.1:{cp.token_port}", ca_pem=other_ca.cert_pem,
                             token=ADMIN_TOKEN), timeout=3) as c, \
            pytest.raises(e.APIError) as info:
        c.list("pods")
    assert info.value.reason is e.Reason.UNAVAILABLE
    # and a client certificate from another CA gets no connection at all
    stranger = pki.issue(other_ca, common_name="corral-admin",
                         organizations=["system:masters"], client=True)
    with Client(ClientConfig(server=cfg.server, ca_pem=cfg.ca_pem,
                             cert_pem=stranger.cert_pem, key_pem=stranger.key_pem),
                timeout=3) as c, pytest.raises(e.APIError) as info:
        c.list("pods")
    assert info.value.reason is e.Reason.UNAVAILABLE


def test_view_role_reads_but_does_not_write_or_read_secrets(cp: ControlPlane) -> None:
    with cp.client() as admin:
        admin.create("pods", pod("web"), namespace="default")
    with with_token(cp, VIEW_TOKEN) as c:
        assert [p["metadata"]["name"] for p in c.list("pods", namespace="default")["items"]] \
            == ["web"]
        with pytest.raises(e.APIError) as info:
            c.delete("pods", "web", namespace="default")
        assert info.value.reason is e.Reason.FORBIDDEN
        assert 'user "alice"' in str(info.value) and "cannot delete" in str(info.value)
        with pytest.raises(e.APIError) as info:
            c.list("secrets", namespace="default")
        assert info.value.reason is e.Reason.FORBIDDEN
    with with_token(cp, ADMIN_TOKEN) as c:
        c.delete("pods", "web", namespace="default")


def test_node_sees_and_updates_only_its_own_pods(cp: ControlPlane) -> None:
    with cp.client() as admin:
        for name, node in (("mine", "n1"), ("theirs", "n2")):
            admin.create("pods", pod(name), namespace="default")
            bind(admin, name, node)
    with node_client(cp, "n1") as n1:
        own = n1.list("pods", field_selector="spec.nodeName=n1")
        assert [p["metadata"]["name"] for p in own["items"]] == ["mine"]
        with pytest.raises(e.APIError) as info:
            n1.list("pods")
        assert info.value.reason is e.Reason.FORBIDDEN
        mine = n1.get("pods", "mine", namespace="default")
        mine["status"] = {"phase": "Running"}
        out = n1.update("pods", mine, namespace="default", subresource="status")
        assert out["status"]["phase"] == "Running"
        theirs = {**mine, "metadata": {**mine["metadata"], "name": "theirs",
                                       "resourceVersion": ""}}
        with pytest.raises(e.APIError) as info:
            n1.update("pods", theirs, namespace="default", subresource="status")
        assert info.value.reason is e.Reason.FORBIDDEN
        assert 'bound to node "n2"' in str(info.value)
        node_obj: dict[str, Any] = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}
        assert n1.create("nodes", node_obj)["metadata"]["name"] == "n1"
        with pytest.raises(e.APIError) as info:
            n1.create("nodes", {**node_obj, "metadata": {"name": "n2"}})
        assert info.value.reason is e.Reason.FORBIDDEN


def test_node_reads_a_secret_only_when_its_pod_uses_it(cp: ControlPlane) -> None:
    with cp.client() as admin:
        for name in ("used", "unused"):
            admin.create("secrets", {"apiVersion": "v1", "kind": "Secret",
                                     "metadata": {"name": name}, "data": {"k": "dg=="}},
                         namespace="default")
        p = pod("app")
        p["spec"]["volumes"] = [{"name": "s", "secret": {"secretName": "used"}}]
        admin.create("pods", p, namespace="default")
        bind(admin, "app", "n1")
    with node_client(cp, "n1") as n1:
        assert n1.get("secrets", "used", namespace="default")["data"] == {"k": "dg=="}
        with pytest.raises(e.APIError) as info:
            n1.get("secrets", "unused", namespace="default")
        assert info.value.reason is e.Reason.FORBIDDEN


def test_secrets_are_ciphertext_in_etcd(cp: ControlPlane) -> None:
    with cp.client() as admin:
        admin.create("secrets", {"apiVersion": "v1", "kind": "Secret",
                                 "metadata": {"name": "db"},
                                 "data": {"password": base64.b64encode(
                                     b"hunter2-plaintext").decode()}},
                     namespace="default")
        assert admin.get("secrets", "db", namespace="default")["data"]["password"]
    raw = subprocess.run(["etcdctl", "--endpoints", cp.etcd_endpoint, "get",
                          "/registry/secrets/default/db", "--print-value-only"],
                         capture_output=True, check=True, env={**os.environ,
                                                               "ETCDCTL_API": "3"}).stdout
    assert raw.startswith(b"corral:enc:aesgcm:v1:key1:")
    assert b"hunter2" not in raw and base64.b64encode(b"hunter2-plaintext") not in raw
