"""Resource names as kubectl takes them, resolved against the server's discovery.

    Resolver.resolve("deploy")            -> Resource(deployments, Deployment, apps/v1)
    resolve("deployments.apps"), ("Deployment"), ("deployment.v1.apps") -> the same
    parse_targets(["po/web", "deploy/x"]) -> [("po", "web"), ("deploy", "x")]
    parse_targets(["po,deploy", "a"])     -> [("po", "a"), ("deploy", "a")]

Discovery is asked once per process (Session.resolver). `offline()` builds the same table
from api.kinds and api.names (the short names the server's discovery gives too) for the
commands that need no server (explain, completion).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from clusterctl.session import CLIError


@dataclass(frozen=True)
class Resource:
    name: str  # plural: "deployments"
    kind: str
    api_version: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()

    @property
    def group(self) -> str:
        return self.api_version.split("/")[0] if "/" in self.api_version else ""

    @property
    def version(self) -> str:
        return self.api_version.split("/")[-1]

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def qualified(self) -> str:
        """`deployments.apps`, `pods`: how kubectl names the resource in messages."""
        return f"{self.name}.{self.group}" if self.group else self.name

    def ref(self, name: str) -> str:
        """`deployment.apps/web`, `pod/web`: kubectl's -o name and apply's report."""
        kind = f"{self.singular}.{self.group}" if self.group else self.singular
        return f"{kind}/{name}"


class Resolver:
    def __init__(self, resources: list[Resource]) -> None:
        self.resources = resources

    @classmethod
    def from_discovery(cls, reply: Any) -> Resolver:
        return cls([Resource(name=r.name, kind=r.kind, api_version=r.api_version,
                             namespaced=r.namespaced, short_names=tuple(r.short_names),
                             subresources=tuple(r.subresources))
                    for r in reply.resources])

    def find(self, text: str) -> Resource | None:
        base, _, qualifier = text.lower().partition(".")
        for r in self.resources:
            if base not in (r.name, r.singular, *r.short_names):
                continue
            if not qualifier or qualifier in (r.group, f"{r.version}.{r.group}".strip("."),
                                              r.version):
                return r
        return None

    def resolve(self, text: str) -> Resource:
        r = self.find(text)
        if r is None:
            raise CLIError(f'the server doesn\'t have a resource type "{text}"')
        return r

    def for_kind(self, api_version: str, kind: str) -> Resource:
        for r in self.resources:
            if (r.api_version, r.kind) == (api_version, kind):
                return r
        raise CLIError(f'no matches for kind "{kind}" in version "{api_version}"')

    def names(self) -> list[str]:
        return sorted(r.name for r in self.resources)


def offline() -> Resolver:
    """The resource table from api.kinds: for commands that must not need a server."""
    from api import kinds, names
    return Resolver([Resource(name=k.resource, kind=k.kind, api_version=k.api_version,
                              namespaced=k.namespaced, short_names=names.short_names(k.resource))
                     for k in kinds.KINDS.values()])


def parse_targets(args: list[str]) -> list[tuple[str, str | None]]:
    """kubectl's argument forms: `TYPE[,TYPE...] [NAME...]` or `TYPE/NAME...` (not mixed).
    Each (type, name) pair; name None means every object of the type."""
    if not args:
        raise CLIError("you must specify the type of resource (e.g. pods, deployments)")
    if any("/" in a for a in args):
        out: list[tuple[str, str | None]] = []
        for a in args:
            kind, sep, name = a.partition("/")
            if not sep:
                raise CLIError(f'there is no need to specify a resource type as a separate '
                               f'argument when passing arguments in resource/name form '
                               f'(e.g. "clusterctl get resource/<resource_name>" instead of '
                               f'"clusterctl get resource resource/<resource_name>"): {a}')
            if not kind or not name:
                raise CLIError(f'arguments in resource/name form must have a single '
                               f'resource and name: "{a}"')
            out.append((kind, name))
        return out
    types = [t for t in args[0].split(",") if t]
    names = args[1:]
    if not names:
        return [(t, None) for t in types]
    return [(t, n) for t in types for n in names]
