"""The busybox image every node pulls: made here from Debian's busybox-static (nothing
can be pulled from the internet), pushed to the cluster's registry with the OCI
distribution API (monolithic blob uploads, then the manifest).

    push_busybox("http://10.99.0.1:5000", [("busybox", "1.36"), ("corral/pause", "1")])
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
import urllib.error
import urllib.parse
import urllib.request
from functools import cache

BUSYBOX = "/bin/busybox"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


def _tar_bytes() -> bytes:
    """bin/busybox, every applet a symlink to it, /etc/passwd and /etc/group, and the
    directories a container needs."""
    if not os.path.exists(BUSYBOX):
        raise RuntimeError(f"{BUSYBOX} is missing (Debian package busybox-static)")
    applets = subprocess.run([BUSYBOX, "--list-full"], stdout=subprocess.PIPE, text=True,
                             check=True).stdout.split()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs = sorted({"bin", "etc", "tmp", "proc", "sys", "dev", "root", "var", "www"}
                      | {os.path.dirname(a) for a in applets})
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755
            tar.addfile(info)
        with open(BUSYBOX, "rb") as f:
            data = f.read()
        info = tarfile.TarInfo("bin/busybox")
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
        for path in applets:
            if path == "bin/busybox":
                continue
            link = tarfile.TarInfo(path)
            link.type, link.linkname, link.mode = tarfile.SYMTYPE, "/bin/busybox", 0o777
            tar.addfile(link)
        for name, text in (("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"
                            "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"),
                           ("etc/group", "root:x:0:\nnogroup:x:65534:\n")):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(text), 0o644
            tar.addfile(info, io.BytesIO(text.encode()))
    return buf.getvalue()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy


@cache
def busybox_image() -> tuple[bytes, bytes, bytes]:
    """(manifest, config, gzip layer) of a one-layer OCI image whose default command
    sleeps, so it also serves as the sandbox ("pause") image."""
    tar = _tar_bytes()
    layer = gzip.compress(tar, compresslevel=1, mtime=0)
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/sleep", "2147483647"],
                   "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [_digest(tar)]}}, sort_keys=True).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": _digest(config), "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": _digest(layer),
                    "size": len(layer)}]}, sort_keys=True).encode()
    return manifest, config, layer


def _request(method: str, url: str, *, data: bytes | None = None,
             content_type: str = "") -> tuple[int, dict[str, str]]:
    req = urllib.request.Request(url, data=data, method=method)
    if content_type:
        req.add_header("Content-Type", content_type)
    try:
        with _OPENER.open(req, timeout=30) as r:
            return r.status, dict(r.headers)
    except urllib.error.HTTPError as err:
        body = err.read().decode(errors="replace")[:300]
        if method == "HEAD" and err.code == 404:
            return 404, {}
        raise RuntimeError(f"registry {method} {url}: {err.code} {body}") from None


def push_busybox(base_url: str, refs: list[tuple[str, str]]) -> None:
    """Push the busybox image as every (repository, tag) of REFS to BASE_URL."""
    manifest, config, layer = busybox_image()
    for repo, tag in refs:
        for blob in (config, layer):
            digest = _digest(blob)
            if _request("HEAD", f"{base_url}/v2/{repo}/blobs/{digest}")[0] == 200:
                continue
            _, headers = _request("POST", f"{base_url}/v2/{repo}/blobs/uploads/")
            location = urllib.parse.urljoin(base_url, headers.get("Location", ""))
            sep = "&" if "?" in location else "?"
            _request("PUT", f"{location}{sep}digest={digest}", data=blob,
                     content_type="application/octet-stream")
        _request("PUT", f"{base_url}/v2/{repo}/manifests/{tag}", data=manifest,
                 content_type=OCI_MANIFEST)
