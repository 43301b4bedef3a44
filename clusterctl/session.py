"""What every server-facing command shares: the config, the client, the namespace, the
resource table, and turning errors into kubectl-shaped messages and exit codes.

    s = Session(args)
    s.client()        api.client.Client (grpc is imported here, on first use)
    s.namespace       -n, else the context's namespace, else "default"
    s.resolver()      discovery, asked once per process
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from api.client import Client, ClientConfig
    from api.errors import APIError
    from clusterctl.resources import Resolver, Resource


class CLIError(Exception):
    """A usage or local error: printed as `error: MESSAGE`, exit 1."""


class Session:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self._config: ClientConfig | None = None
        self._client: Client | None = None
        self._resolver: Resolver | None = None

    def config(self) -> ClientConfig:
        if self._config is None:
            from api import client as api_client
            try:
                self._config = api_client.load_config(getattr(self.args, "config", None),
                                                      context=getattr(self.args, "context",
                                                                      None))
            except api_client.ConfigError as err:
                raise CLIError(str(err)) from None
        return self._config

    def client(self) -> Client:
        if self._client is None:
            from api.client import Client
            self._client = Client(self.config())
        return self._client

    @property
    def namespace(self) -> str:
        explicit = getattr(self.args, "namespace", None)
        return str(explicit) if explicit else (self.config().namespace or "default")

    @property
    def explicit_namespace(self) -> bool:
        return bool(getattr(self.args, "namespace", None))

    def resolver(self) -> Resolver:
        if self._resolver is None:
            from clusterctl.resources import Resolver
            self._resolver = Resolver.from_discovery(self.client().discovery())
        return self._resolver

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def server_error(err: APIError, *, res: Resource | None = None, name: str = "",
                 action: str = "") -> str:
    """kubectl's shape: `Error from server (NotFound): deployments.apps "web" not found`."""
    from api.errors import Reason
    if err.reason is Reason.UNAVAILABLE:
        return f"error: {err.message}"
    text = err.message
    about_it = res is not None and err.details.get("kind", res.kind) == res.kind
    if res is not None and name and about_it and err.reason is Reason.NOT_FOUND:
        text = f'{res.qualified} "{name}" not found'
    elif res is not None and name and about_it and err.reason is Reason.ALREADY_EXISTS:
        text = f'{res.qualified} "{name}" already exists'
    if action:
        text = f"{action}: {text}"
    return f"Error from server ({err.reason.k8s}): {text}"


def report(err: BaseException) -> int:
    """Print ERR the way kubectl would; the exit code (always 1: kubectl's)."""
    from api.errors import APIError
    if isinstance(err, APIError):
        sys.stderr.write(server_error(err) + "\n")
    elif isinstance(err, CLIError | ValueError):
        sys.stderr.write(f"error: {err}\n")
    else:
        sys.stderr.write(f"error: {type(err).__name__}: {err}\n")
    return 1


def emit(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def warn(text: str) -> None:
    sys.stderr.write(text if text.endswith("\n") else text + "\n")


def strip_for_output(obj: dict[str, Any]) -> dict[str, Any]:
    """OBJ without metadata.managedFields (kubectl hides them unless asked)."""
    meta = obj.get("metadata")
    if isinstance(meta, dict) and "managedFields" in meta:
        obj = {**obj, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}
    return obj
