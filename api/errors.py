"""The API's one error taxonomy: Kubernetes' status reasons, mapped to gRPC codes here only.

Handlers raise these; the gRPC edge turns them into a status code, the message, and a
JSON ``Status`` in the ``corral-status-bin`` trailer (reason, details, causes) so that a
client can act on the reason rather than parse the text. clusterctl maps the same reasons
to its exit codes.
"""

from __future__ import annotations

import enum
import json
from typing import Any


class Reason(enum.Enum):
    # value: (Kubernetes reason, gRPC status code name)
    BAD_REQUEST = ("BadRequest", "INVALID_ARGUMENT")
    INVALID = ("Invalid", "INVALID_ARGUMENT")
    NOT_FOUND = ("NotFound", "NOT_FOUND")
    ALREADY_EXISTS = ("AlreadyExists", "ALREADY_EXISTS")
    CONFLICT = ("Conflict", "ABORTED")
    GONE = ("Expired", "OUT_OF_RANGE")
    UNAUTHORIZED = ("Unauthorized", "UNAUTHENTICATED")
    FORBIDDEN = ("Forbidden", "PERMISSION_DENIED")
    METHOD_NOT_ALLOWED = ("MethodNotAllowed", "UNIMPLEMENTED")
    TOO_LARGE = ("RequestEntityTooLarge", "RESOURCE_EXHAUSTED")
    UNAVAILABLE = ("ServiceUnavailable", "UNAVAILABLE")
    TIMEOUT = ("Timeout", "DEADLINE_EXCEEDED")
    INTERNAL = ("InternalError", "INTERNAL")

    @property
    def k8s(self) -> str:
        return self.value[0]

    @property
    def grpc_code(self) -> str:
        return self.value[1]

    @classmethod
    def from_k8s(cls, name: str) -> Reason:
        for r in cls:
            if r.k8s == name:
                return r
        return cls.INTERNAL


MAX_MESSAGE = 4096
MAX_CAUSE = 256
MAX_CAUSES = 20


def clip(text: str, limit: int) -> str:
    """TEXT, or its head and a note of how much was left out (error messages echo
    client values, which may be huge)."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


class APIError(Exception):
    """An error with a reason a client can act on; the message names object and field."""

    def __init__(self, reason: Reason, message: str, *, causes: list[dict[str, str]] | None
                 = None, retry_after: float | None = None, **details: Any) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.causes = causes or []
        self.retry_after = retry_after
        self.details = details

    def status(self) -> dict[str, Any]:
        """Kubernetes' Status object for this error (what the trailer carries), with long
        texts cut so that it always fits in gRPC's metadata limit (16 KiB)."""
        out: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                               "reason": self.reason.k8s,
                               "message": clip(self.message, MAX_MESSAGE)}
        details = {k: clip(v, MAX_CAUSE) if isinstance(v, str) else v
                   for k, v in self.details.items()}
        if self.causes:
            details["causes"] = [{k: clip(str(v), MAX_CAUSE) for k, v in c.items()}
                                 for c in self.causes[:MAX_CAUSES]]
        if self.retry_after is not None:
            details["retryAfterSeconds"] = self.retry_after
        if details:
            out["details"] = details
        return out

    def to_bytes(self) -> bytes:
        return json.dumps(self.status(), separators=(",", ":")).encode()

    @classmethod
    def from_status(cls, status: dict[str, Any]) -> APIError:
        details = dict(status.get("details") or {})
        causes = details.pop("causes", None)
        retry = details.pop("retryAfterSeconds", None)
        return cls(Reason.from_k8s(str(status.get("reason", ""))),
                   str(status.get("message", "")), causes=causes, retry_after=retry,
                   **details)

    def __repr__(self) -> str:
        return f"APIError({self.reason.k8s}, {self.message!r})"


def not_found(kind: str, name: str, namespace: str = "") -> APIError:
    where = f" in namespace {namespace!r}" if namespace else ""
    return APIError(Reason.NOT_FOUND, f"{kind} {name!r} not found{where}", kind=kind,
                    name=name)


def already_exists(kind: str, name: str, namespace: str = "") -> APIError:
    where = f" in namespace {namespace!r}" if namespace else ""
    return APIError(Reason.ALREADY_EXISTS, f"{kind} {name!r} already exists{where}",
                    kind=kind, name=name)


def conflict(kind: str, name: str, *, current: int, problem: str = "") -> APIError:
    text = problem or ("the object has been modified; please apply your changes to the "
                       "latest version and try again")
    return APIError(Reason.CONFLICT,
                    f"Operation cannot be fulfilled on {kind} {name!r}: {text} "
                    f"(current resourceVersion {current})",
                    kind=kind, name=name, resourceVersion=str(current))


def bad_request(message: str) -> APIError:
    return APIError(Reason.BAD_REQUEST, message)


def invalid(kind: str, name: str, causes: list[tuple[str, str]]) -> APIError:
    """Invalid with one cause per field: `Deployment web: spec.replicas: must be >= 0`."""
    who = f"{kind} {name}".strip()
    text = "; ".join(f"{path}: {problem}" if path else problem for path, problem in causes)
    return APIError(Reason.INVALID, f"{who}: {text}", kind=kind, name=name,
                    causes=[{"field": p, "message": m} for p, m in causes])


def forbidden(message: str) -> APIError:
    return APIError(Reason.FORBIDDEN, message)


def unavailable(message: str, *, retry_after: float = 1.0) -> APIError:
    return APIError(Reason.UNAVAILABLE, message, retry_after=retry_after)
