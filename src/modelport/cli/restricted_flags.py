"""Triton's `--http-restricted-api` / `--grpc-restricted-protocol` flags, parsed into Restriction values.

Each flag is `<api>[,<api>...]:<key>=<value>` and may be repeated with different keys; an API named
in two groups of one flag is an error, as in tritonserver. Over gRPC the header is
`triton-grpc-protocol-<key>` (Triton's prefix); over HTTP it is `<key>`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from modelport.config.settings import RESTRICTED_CATEGORIES, Restriction

HTTP_FLAG = "--http-restricted-api"
GRPC_FLAG = "--grpc-restricted-protocol"
GRPC_HEADER_PREFIX = "triton-grpc-protocol-"
# An HTTP header name (RFC 9110 token): any other key could never be matched and would lock the API.
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def parse_http_restricted_apis(entries: Iterable[str]) -> Mapping[str, Restriction]:
    return parse_restrictions(entries, HTTP_FLAG, "api", "")


def parse_grpc_restricted_protocols(entries: Iterable[str]) -> Mapping[str, Restriction]:
    return parse_restrictions(entries, GRPC_FLAG, "protocol", GRPC_HEADER_PREFIX)


def parse_restrictions(
    entries: Iterable[str], flag: str, kind: str, header_prefix: str
) -> Mapping[str, Restriction]:
    """category -> Restriction from every occurrence of `flag`; ValueError with Triton's messages."""
    found: dict[str, Restriction] = {}
    for entry in entries:
        apis, key, value = _split(entry, flag)
        if not _HEADER_NAME.fullmatch(key):
            raise ValueError(f"{flag}={entry}: '{key}' is not a valid header name")
        for api in apis.split(","):
            if api not in RESTRICTED_CATEGORIES:
                raise ValueError(
                    f"{flag}={entry}: unknown restricted {kind} '{api}' "
                    f"(allowed: {', '.join(RESTRICTED_CATEGORIES)})"
                )
            if api in found:
                raise ValueError(
                    f"{flag}={entry}: restricted {kind} '{api}' "
                    "can not be specified in multiple config groups"
                )
            found[api] = Restriction(header_prefix + key, value)
    return MappingProxyType(found)


def _split(entry: str, flag: str) -> tuple[str, str, str]:
    """`<apis>:<key>=<value>`: the first ':' ends the APIs, the first '=' after it ends the key."""
    apis, colon, setting = entry.partition(":")
    key, equals, value = setting.partition("=")
    if not (colon and equals and apis and key and value):
        raise ValueError(f"{flag} option format is '<config name>:<setting>=<value>'. Got {entry}")
    return apis, key, value
