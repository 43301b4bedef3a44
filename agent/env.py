"""A container's environment, resolved the way kubelet resolves it.

    resolve(pod, container, *, client)  ->  [(name, value), ...]

        envFrom[i]  configMapRef / secretRef    every key (with prefix) in order; keys that
                                                are not valid names are skipped and reported
        env[j]      value                       $(VAR) expanded against what came before
                    valueFrom.fieldRef          field_value(pod, path)
                    valueFrom.resourceFieldRef  resource_value(pod, container, resource, divisor)
                    valueFrom.configMapKeyRef   one key of a ConfigMap (optional: skipped)
                    valueFrom.secretKeyRef      one key of a Secret (optional: skipped)

The result keeps the order in which names first appear; a later definition of a name
replaces the earlier value in place ("later wins"). Kubernetes' expansion rules: `$(NAME)`
becomes NAME's value when NAME is defined earlier, and stays as written otherwise; `$$`
is a literal `$`; only literal `value`s are expanded, never values from a source.

Pieces the volumes module shares: `ObjectGetter` (the one client method both need, so a
test can pass a fake and the agent its `api.client.AsyncClient`), `config_map_data` and
`secret_data` (None when the object does not exist), `field_value`, `resource_value`.
status.podIP and status.hostIP are read from the pod's status and nowhere else: the
worker hands over the pod with the sandbox's and the node's IPs already in it
(worker.with_sandbox_ips), so they are there at the first start too.
Every error is an `EnvError` naming the pod, the container and the variable:
`Pod web: containers[app].env[DB]: secret "db" not found`.
"""

from __future__ import annotations

import base64
import binascii
import logging
import math
import re
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from api import errors
from api.quantity import QuantityError, parse

log = logging.getLogger(__name__)

_ENV_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")
_SUBSCRIPT = re.compile(r"^metadata\.(labels|annotations)\['(.*)'\]$")


class ObjectGetter(Protocol):
    """What env and volumes need of the API client (api.client.AsyncClient has it)."""

    async def get(self, resource: str, name: str, *, namespace: str = "",
                  subresource: str = "") -> dict[str, Any]: ...


class EnvError(ValueError):
    """An environment that cannot be resolved; the message names pod, container, variable."""


class FieldPathError(ValueError):
    """A fieldRef or resourceFieldRef the agent does not know; the message is the problem."""


# ---- reading ConfigMaps and Secrets -------------------------------------------------------

async def _get_or_none(client: ObjectGetter, resource: str, name: str,
                       namespace: str) -> dict[str, Any] | None:
    try:
        return await client.get(resource, name, namespace=namespace)
    except errors.APIError as err:
        if err.reason is errors.Reason.NOT_FOUND:
            return None
        raise


async def config_map_data(client: ObjectGetter, namespace: str, name: str, *,
                          binary: bool = True) -> dict[str, bytes] | None:
    """The keys of ConfigMap NAMESPACE/NAME as bytes (data, then binaryData when BINARY);
    None when it does not exist."""
    obj = await _get_or_none(client, "configmaps", name, namespace)
    if obj is None:
        return None
    out = {k: str(v).encode() for k, v in (obj.get("data") or {}).items()}
    if binary:
        for k, v in (obj.get("binaryData") or {}).items():
            out[k] = _b64(v, f'configMap "{name}": binaryData[{k}]')
    return out


async def secret_data(client: ObjectGetter, namespace: str,
                      name: str) -> dict[str, bytes] | None:
    """The decoded keys of Secret NAMESPACE/NAME; None when it does not exist."""
    obj = await _get_or_none(client, "secrets", name, namespace)
    if obj is None:
        return None
    out = {k: _b64(v, f'secret "{name}": data[{k}]') for k, v in (obj.get("data") or {}).items()}
    for k, v in (obj.get("stringData") or {}).items():  # in case the server left it
        out[k] = str(v).encode()
    return out


def _b64(value: Any, where: str) -> bytes:
    try:
        return base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError):
        raise FieldPathError(f"{where}: not valid base64") from None


def _text(value: bytes) -> str:
    return value.decode("utf-8", errors="replace")


# ---- fieldRef and resourceFieldRef --------------------------------------------------------

def field_value(pod: Mapping[str, Any], path: str, *, whole_maps: bool = False) -> str:
    """The text of pod field PATH, as the downward API gives it. A missing label or
    annotation is "". WHOLE_MAPS allows metadata.labels / metadata.annotations (volumes
    only): one `key="value"` line per entry, sorted, values quoted like Go's %q."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    m = _SUBSCRIPT.match(path)
    if m:
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    if path in ("metadata.labels", "metadata.annotations") and whole_maps:
        items = sorted((meta.get(path.split(".")[1]) or {}).items())
        return "\n".join(f"{k}={_quote(str(v))}" for k, v in items)
    simple: dict[str, Callable[[], Any]] = {
        "metadata.name": lambda: meta.get("name", ""),
        "metadata.namespace": lambda: meta.get("namespace") or "default",
        "metadata.uid": lambda: meta.get("uid", ""),
        "spec.nodeName": lambda: spec.get("nodeName", ""),
        "spec.serviceAccountName": lambda: (spec.get("serviceAccountName")
                                            or spec.get("serviceAccount") or ""),
        "status.podIP": lambda: status.get("podIP", ""),
        "status.hostIP": lambda: status.get("hostIP", ""),
        "status.podIPs": lambda: ",".join(i.get("ip", "") for i in status.get("podIPs") or []),
        "status.hostIPs": lambda: ",".join(i.get("ip", "") for i in status.get("hostIPs") or []),
    }
    if path not in simple:
        known = sorted([*simple, "metadata.labels['<key>']", "metadata.annotations['<key>']"])
        raise FieldPathError(f"unsupported fieldPath {path!r} (supported: {', '.join(known)})")
    return str(simple[path]())


def _quote(value: str) -> str:
    """Go's strconv.Quote for the text downward API volumes write."""
    out = ['"']
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


_RESOURCES = ("cpu", "memory", "ephemeral-storage")


def resource_value(pod: Mapping[str, Any], *, container_name: str, resource: str,
                   divisor: Any = None, allocatable: Mapping[str, Any] | None = None) -> str:
    """limits.X / requests.X of a container, in units of DIVISOR (default 1), rounded up
    (cpu by millicores, the others by whole units, as kubelet does). A missing limit is the
    node's allocatable amount when given, else 0."""
    kind, _, name = resource.partition(".")
    if kind not in ("limits", "requests") or name not in _RESOURCES:
        raise FieldPathError(f"unsupported resource {resource!r} (supported: limits.* and "
                             f"requests.* of {', '.join(_RESOURCES)})")
    spec = pod.get("spec") or {}
    containers = [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]
    found = [c for c in containers if c.get("name") == container_name]
    if not found:
        raise FieldPathError(f"no container named {container_name!r} in the pod")
    res = found[0].get("resources") or {}
    raw = (res.get(kind) or {}).get(name)
    if raw is None and kind == "limits" and allocatable:
        raw = allocatable.get(name)
    try:
        amount = parse(raw if raw is not None else 0)
        div = parse(divisor if divisor not in (None, "") else 1)
    except QuantityError as err:
        raise FieldPathError(str(err)) from None
    if div.amount <= 0:
        raise FieldPathError(f"divisor must be positive, got {divisor!r}")
    if name == "cpu":
        return str(math.ceil(amount.milli_value() / div.milli_value()))
    return str(math.ceil(amount.value() / div.value()))


# ---- $(VAR) expansion ------------------------------------------------------------------

def expand(text: str, defined: Mapping[str, str]) -> str:
    """Kubernetes' expansion: $(NAME) -> defined[NAME] (as written when undefined),
    $$ -> $, any other $ (and an unclosed `$(`) stays as it is."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch != "$" or i + 1 == n:
            out.append(ch)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "(":
            close = text.find(")", i + 2)
            if close < 0:
                out.append("$(")
                i += 2
            else:
                name = text[i + 2:close]
                out.append(defined.get(name, f"$({name})"))
                i = close + 1
        else:
            out.append("$" + nxt)
            i += 2
    return "".join(out)


# ---- resolve ---------------------------------------------------------------------------

async def resolve(pod: Mapping[str, Any], container: Mapping[str, Any], *,
                  client: ObjectGetter,
                  allocatable: Mapping[str, Any] | None = None,
                  warn: Callable[[str], None] | None = None) -> list[tuple[str, str]]:
    """The environment of CONTAINER of POD. WARN receives the reports of skipped invalid
    envFrom keys (kubelet's InvalidEnvironmentVariableNames event); default: logged."""
    meta = pod.get("metadata") or {}
    namespace = meta.get("namespace") or "default"
    where = f"Pod {meta.get('name', '')}: containers[{container.get('name', '')}]"
    env: dict[str, str] = {}

    for i, source in enumerate(container.get("envFrom") or []):
        prefix = source.get("prefix") or ""
        ref, what = ((source["configMapRef"], "configMap") if source.get("configMapRef")
                     else (source.get("secretRef") or {}, "secret"))
        ref_name = ref.get("name", "")
        try:
            data = (await config_map_data(client, namespace, ref_name, binary=False)
                    if what == "configMap" else await secret_data(client, namespace, ref_name))
        except (errors.APIError, FieldPathError) as err:
            raise EnvError(f"{where}.envFrom[{i}]: {what} {ref_name!r}: {err}") from err
        if data is None:
            if ref.get("optional"):
                continue
            raise EnvError(f'{where}.envFrom[{i}]: {what} "{ref_name}" not found in '
                           f"namespace {namespace!r}")
        invalid = []
        for key in sorted(data):
            if not _ENV_NAME.fullmatch(prefix + key):
                invalid.append(prefix + key)
                continue
            env[prefix + key] = _text(data[key])
        if invalid:
            report = (f"{where}.envFrom[{i}]: keys of {what} {ref_name!r} skipped as invalid "
                      f"environment variable names: {', '.join(invalid)}")
            (warn or log.warning)(report)

    for var in container.get("env") or []:
        name = var.get("name", "")
        here = f"{where}.env[{name}]"
        source = var.get("valueFrom")
        if not source:
            env[name] = expand(str(var.get("value") or ""), env)
            continue
        try:
            value = await _value_from(pod, container, source, client=client,
                                      namespace=namespace, allocatable=allocatable)
        except (errors.APIError, FieldPathError) as err:
            raise EnvError(f"{here}: {err}") from err
        except LookupError as err:
            raise EnvError(f"{here}: {err.args[0]}") from None
        if value is not None:
            env[name] = value
    return list(env.items())


async def _value_from(pod: Mapping[str, Any], container: Mapping[str, Any],
                      source: Mapping[str, Any], *, client: ObjectGetter, namespace: str,
                      allocatable: Mapping[str, Any] | None) -> str | None:
    """One valueFrom; None when an optional source or key is missing."""
    if source.get("fieldRef"):
        return field_value(pod, source["fieldRef"].get("fieldPath", ""))
    if source.get("resourceFieldRef"):
        ref = source["resourceFieldRef"]
        return resource_value(pod, container_name=ref.get("containerName")
                              or container.get("name", ""), resource=ref.get("resource", ""),
                              divisor=ref.get("divisor"), allocatable=allocatable)
    what = "configMap" if source.get("configMapKeyRef") else "secret"
    ref = source.get("configMapKeyRef") or source.get("secretKeyRef") or {}
    ref_name, key = ref.get("name", ""), ref.get("key", "")
    data = (await config_map_data(client, namespace, ref_name, binary=False)
            if what == "configMap" else await secret_data(client, namespace, ref_name))
    if data is None:
        if ref.get("optional"):
            return None
        raise LookupError(f'{what} "{ref_name}" not found in namespace {namespace!r}')
    if key not in data:
        if ref.get("optional"):
            return None
        raise LookupError(f'{what} "{ref_name}" has no key {key!r}')
    return _text(data[key])
