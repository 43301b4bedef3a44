"""Image references: ``host[:port]/path/name[:tag][@sha256:<hex>]``.

    parse_reference("127.0.0.1:5000/lib/busybox:1.36")
        -> Reference(registry="127.0.0.1:5000", repository="lib/busybox", tag="1.36")

The first path component is a registry host when it contains a ``.`` or a ``:`` or is
``localhost``; otherwise the caller's ``default_registry`` is used, and without one the
reference is an error (no registry host is built in). No tag and no digest means ``latest``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from runtime.service.content import Digest, InvalidDigest
from runtime.service.images.errors import InvalidReference

DEFAULT_TAG = "latest"
_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_HOST = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
    r"|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?"
)
_MAX_NAME = 255


@dataclass(frozen=True)
class Reference:
    registry: str  # host[:port], as written
    repository: str  # path/name, no registry
    tag: str | None = None
    digest: Digest | None = None

    @property
    def name(self) -> str:
        """``host/path/name``: the image without tag or digest."""
        return f"{self.registry}/{self.repository}"

    @property
    def object(self) -> str:
        """What to ask the registry's manifests endpoint for: the digest, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    @property
    def host(self) -> str:
        """The registry host without its port (decides http vs https)."""
        if self.registry.startswith("["):
            return self.registry[: self.registry.index("]") + 1]
        return self.registry.rsplit(":", 1)[0]

    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


def _looks_like_host(component: str) -> bool:
    return "." in component or ":" in component or component == "localhost" or (
        component.startswith("[")
    )


def parse_reference(ref: str, *, default_registry: str | None = None) -> Reference:
    """Parse REF; raise InvalidReference naming REF and what is wrong with it."""
    if not isinstance(ref, str) or not ref:
        raise InvalidReference(f"image reference {ref!r}: must be a non-empty string")
    rest, at, digest_s = ref.partition("@")
    digest: Digest | None = None
    if at:
        try:
            digest = Digest(digest_s)
        except InvalidDigest as e:
            raise InvalidReference(f"image reference {ref!r}: digest: {e}") from None
    tag: str | None = None
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
        if not _TAG.fullmatch(tag):
            raise InvalidReference(
                f"image reference {ref!r}: tag {tag!r}: must match [A-Za-z0-9_][A-Za-z0-9_.-]"
                "{0,127}"
            )
    first, sep, path = rest.partition("/")
    if sep and _looks_like_host(first):
        registry = first
        if not _HOST.fullmatch(registry):
            raise InvalidReference(f"image reference {ref!r}: registry host {registry!r} is invalid")
    else:
        if default_registry is None:
            raise InvalidReference(
                f"image reference {ref!r}: no registry host (write host[:port]/name, or"
                " configure a default registry)"
            )
        registry, path = default_registry, rest
    if not path:
        raise InvalidReference(f"image reference {ref!r}: repository name is empty")
    if len(path) > _MAX_NAME:
        raise InvalidReference(
            f"image reference {ref!r}: repository name is longer than {_MAX_NAME} characters"
        )
    for component in path.split("/"):
        if not _COMPONENT.fullmatch(component):
            raise InvalidReference(
                f"image reference {ref!r}: path component {component!r}: must be lowercase"
                " letters and digits, separated by '.', '_', '__' or '-'"
            )
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return Reference(registry=registry, repository=path, tag=tag, digest=digest)
