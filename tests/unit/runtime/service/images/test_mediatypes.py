"""Media-type decisions: what a manifest is, which index entry we follow, which config
and layer types we accept."""

from __future__ import annotations

import json
import re

import pytest

from runtime.service.images import Platform, PlatformNotFound, UnsupportedMediaType
from runtime.service.images import mediatypes as mt

D1, D2, D3 = ("sha256:" + c * 64 for c in "123")


def desc(media_type: str, digest: str = D1, size: int = 10, **extra: object) -> dict[str, object]:
    return {"mediaType": media_type, "digest": digest, "size": size, **extra}


def test_accept_list_prefers_oci_and_names_all_four() -> None:
    assert mt.MANIFEST_ACCEPT == (mt.OCI_INDEX, mt.OCI_MANIFEST, mt.DOCKER_MANIFEST_LIST,
                                  mt.DOCKER_MANIFEST)


@pytest.mark.parametrize(
    ("media_type", "kind"),
    [
        pytest.param(mt.OCI_INDEX, mt.Kind.INDEX, id="oci-index"),
        pytest.param(mt.DOCKER_MANIFEST_LIST, mt.Kind.INDEX, id="docker-list"),
        pytest.param(mt.OCI_MANIFEST, mt.Kind.MANIFEST, id="oci-manifest"),
        pytest.param(mt.DOCKER_MANIFEST, mt.Kind.MANIFEST, id="docker-schema2"),
        pytest.param("application/vnd.docker.distribution.manifest.v1+prettyjws", None,
                     id="schema1-refused"),
        pytest.param("application/vnd.foo", None, id="unknown"),
    ],
)
def test_kind_of(media_type: str, kind: mt.Kind | None) -> None:
    if kind is None:
        with pytest.raises(UnsupportedMediaType, match=re.escape(f"unsupported media type {media_type}")):
            mt.kind_of(media_type, what="manifest x")
    else:
        assert mt.kind_of(media_type, what="manifest x") is kind


@pytest.mark.parametrize(
    ("content_type", "body", "want"),
    [
        pytest.param(f"{mt.OCI_MANIFEST}; charset=utf-8", b"{}", mt.OCI_MANIFEST, id="header"),
        pytest.param("application/json", json.dumps({"mediaType": mt.DOCKER_MANIFEST}).encode(),
                     mt.DOCKER_MANIFEST, id="generic-header-uses-body"),
        pytest.param(None, b'{"schemaVersion":2,"manifests":[]}', mt.OCI_INDEX,
                     id="no-type-index-shape"),
        pytest.param(None, b'{"schemaVersion":2,"config":{},"layers":[]}', mt.OCI_MANIFEST,
                     id="no-type-manifest-shape"),
    ],
)
def test_manifest_media_type(content_type: str | None, body: bytes, want: str) -> None:
    assert mt.manifest_media_type(content_type, body, what="manifest") == want


INDEX = json.dumps({"schemaVersion": 2, "manifests": [
    desc(mt.OCI_MANIFEST, D1, platform={"os": "linux", "architecture": "arm64",
                                        "variant": "v8"}),
    desc(mt.OCI_MANIFEST, D2, platform={"os": "linux", "architecture": "amd64"}),
    desc(mt.OCI_MANIFEST, D3, platform={"os": "windows", "architecture": "amd64"}),
]}).encode()


@pytest.mark.parametrize(
    ("platform", "digest"),
    [
        pytest.param("linux/amd64", D2, id="amd64"),
        pytest.param("linux/arm64", D1, id="arm64-any-variant"),
        pytest.param("linux/arm64/v8", D1, id="arm64-v8"),
        pytest.param("windows/amd64", D3, id="windows"),
        pytest.param("linux/arm64/v7", None, id="wrong-variant"),
        pytest.param("linux/s390x", None, id="missing"),
    ],
)
def test_select_platform(platform: str, digest: str | None) -> None:
    p = Platform.parse(platform)
    if digest is None:
        with pytest.raises(PlatformNotFound, match=f"no manifest for platform {platform} in index"):
            mt.select_platform(INDEX, p)
    else:
        assert mt.select_platform(INDEX, p).digest == digest


def manifest(config_type: str = mt.OCI_CONFIG, layer_type: str = mt.OCI_LAYER_GZIP,
             version: object = 2) -> bytes:
    return json.dumps({"schemaVersion": version, "config": desc(config_type, D1),
                       "layers": [desc(layer_type, D2, 5)]}).encode()


@pytest.mark.parametrize(
    ("body", "error"),
    [
        pytest.param(manifest(), None, id="oci-gzip"),
        pytest.param(manifest(layer_type=mt.OCI_LAYER), None, id="oci-plain"),
        pytest.param(manifest(mt.DOCKER_CONFIG, mt.DOCKER_LAYER_GZIP), None, id="docker"),
        pytest.param(manifest(layer_type="application/vnd.foo"),
                     "layer sha256:222222222222…: unsupported media type application/vnd.foo",
                     id="unknown-layer"),
        pytest.param(manifest(config_type="application/vnd.foo"),
                     "config sha256:111111111111…: unsupported media type application/vnd.foo",
                     id="unknown-config"),
        pytest.param(manifest(version=1), "schemaVersion 1 is not supported", id="schema1"),
    ],
)
def test_parse_manifest(body: bytes, error: str | None) -> None:
    if error is None:
        m = mt.parse_manifest(body, mt.OCI_MANIFEST)
        assert m.config.digest == D1
        assert [(layer.digest, layer.size) for layer in m.layers] == [(D2, 5)]
    else:
        with pytest.raises(UnsupportedMediaType) as e:
            mt.parse_manifest(body, mt.OCI_MANIFEST)
        assert error in str(e.value)


@pytest.mark.parametrize("text", [pytest.param("linux", id="no-arch"),
                                  pytest.param("linux//", id="empty-parts"),
                                  pytest.param("a/b/c/d", id="too-many")])
def test_platform_parse_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=f"platform {text!r}"):
        Platform.parse(text)
