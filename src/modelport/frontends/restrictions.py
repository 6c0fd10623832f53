"""Triton's restricted APIs: the category of every gRPC RPC, the header check, and the refusal texts.

The HTTP routes carry their category in the route table (frontends/http/app.py). A request of a
restricted category without the configured header and value is refused before anything else:
HTTP 403, gRPC UNAVAILABLE, with Triton's messages.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping
from typing import Any

from modelport.config.settings import Restriction, ServerSettings

HEALTH = "health"
METADATA = "metadata"
INFERENCE = "inference"
SHARED_MEMORY = "shared-memory"
MODEL_CONFIG = "model-config"
MODEL_REPOSITORY = "model-repository"
STATISTICS = "statistics"
TRACE = "trace"
LOGGING = "logging"
# modelport's status page: the page itself holds no data and is never restricted (it asks for the key);
# its JSON shows statistics, the repository index and model configuration, so it needs all three.
STATUS_PAGE = "status-page"
STATUS_DATA = "status-data"
STATUS_DATA_CATEGORIES = (STATISTICS, MODEL_REPOSITORY, MODEL_CONFIG)

# GRPCInferenceService RPC -> category, as tritonserver registers its handlers.
GRPC_CATEGORIES: dict[str, str] = {
    "ServerLive": HEALTH,
    "ServerReady": HEALTH,
    "ModelReady": HEALTH,
    "ServerMetadata": METADATA,
    "ModelMetadata": METADATA,
    "ModelConfig": MODEL_CONFIG,
    "ModelStatistics": STATISTICS,
    "RepositoryIndex": MODEL_REPOSITORY,
    "RepositoryModelLoad": MODEL_REPOSITORY,
    "RepositoryModelUnload": MODEL_REPOSITORY,
    "SystemSharedMemoryStatus": SHARED_MEMORY,
    "SystemSharedMemoryRegister": SHARED_MEMORY,
    "SystemSharedMemoryUnregister": SHARED_MEMORY,
    "CudaSharedMemoryStatus": SHARED_MEMORY,
    "CudaSharedMemoryRegister": SHARED_MEMORY,
    "CudaSharedMemoryUnregister": SHARED_MEMORY,
    "TraceSetting": TRACE,
    "LogSettings": LOGGING,
    "ModelInfer": INFERENCE,
    "ModelStreamInfer": INFERENCE,
}


class HeaderCheck:
    """One restriction, ready to test requests against: header names match in any case, values exactly."""

    __slots__ = ("_name", "_name_bytes", "_value", "grpc_message", "header", "http_message")

    def __init__(self, restriction: Restriction) -> None:
        self.header = restriction.header
        self.http_message = f"This API is restricted, expecting header '{restriction.header}'"
        self.grpc_message = f"This protocol is restricted, expecting header '{restriction.header}'"
        # ASGI servers and gRPC hand names over lower-cased; the first occurrence counts, as in Triton.
        self._name = restriction.header.lower()
        self._name_bytes = self._name.encode("latin-1")
        self._value = restriction.value.encode("utf-8", "surrogateescape")

    def allows_http(self, headers: Iterable[tuple[bytes, bytes]]) -> bool:
        """Whether ASGI `headers` carry the header with the expected value."""
        for name, value in headers:
            if name == self._name_bytes:
                return hmac.compare_digest(value, self._value)
        return False

    def allows_grpc(self, metadata: Iterable[tuple[str, Any]] | None) -> bool:
        """Whether a call's invocation metadata carries the header with the expected value."""
        for name, value in metadata or ():
            if name == self._name:
                raw = value if isinstance(value, bytes) else str(value).encode("utf-8", "surrogateescape")
                return hmac.compare_digest(raw, self._value)
        return False


class AllHeaderChecks:
    """Several restrictions on one route: a request needs every one's header."""

    __slots__ = ("_checks", "http_message")

    def __init__(self, checks: Iterable[HeaderCheck]) -> None:
        self._checks = tuple(checks)
        names = list(dict.fromkeys(check.header for check in self._checks))
        quoted = " and ".join(f"'{name}'" for name in names)
        plural = "s" if len(names) > 1 else ""
        self.http_message = f"This API is restricted, expecting header{plural} {quoted}"

    def allows_http(self, headers: Iterable[tuple[bytes, bytes]]) -> bool:
        listed = list(headers)
        return all(check.allows_http(listed) for check in self._checks)


HttpCheck = HeaderCheck | AllHeaderChecks


def route_check(category: str, checks: Mapping[str, HeaderCheck]) -> HttpCheck | None:
    """The check of a route of `category` (None: open); the status data needs each of its categories'."""
    if category != STATUS_DATA:
        return checks.get(category)
    # One flag often restricts several categories with one header: ask for it once.
    found = (checks[k] for k in STATUS_DATA_CATEGORIES if k in checks)
    needed = list({(c._name, c._value): c for c in found}.values())
    if not needed:
        return None
    return needed[0] if len(needed) == 1 else AllHeaderChecks(needed)


def header_checks(restrictions: Mapping[str, Restriction]) -> dict[str, HeaderCheck]:
    """category -> its check, for the restricted categories only."""
    return {category: HeaderCheck(restriction) for category, restriction in restrictions.items()}


def unrestricted_repository_warning(settings: ServerSettings) -> str | None:
    """The startup warning for explicit mode with the model-repository API open on a served protocol."""
    if settings.model_control_mode != "explicit":
        return None
    flags = []
    if settings.allow_http and MODEL_REPOSITORY not in settings.http_restricted_apis:
        flags.append("--http-restricted-api")
    if settings.allow_grpc and MODEL_REPOSITORY not in settings.grpc_restricted_protocols:
        flags.append("--grpc-restricted-protocol")
    if not flags:
        return None
    protocols = " and ".join("HTTP" if f.startswith("--http") else "gRPC" for f in flags)
    how = " and ".join(f"{flag}=model-repository:<key>=<value>" for flag in flags)
    return (
        f"model control mode is explicit and the model-repository API is not restricted on {protocols}: "
        "anyone who reaches the port can load and unload models, including Python models whose code "
        f"runs in this server; restrict it with {how}"
    )
