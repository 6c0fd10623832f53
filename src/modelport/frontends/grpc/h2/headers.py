"""What a call's request HEADERS say, and the response and trailer headers gRPC expects back.

Request: :method, :path, content-type, grpc-timeout, grpc-encoding; every other header that is
not a pseudo-header, `te` or reserved `grpc-*` is invocation metadata (keys lower-case, `-bin`
values base64-decoded). Response: :status 200 and content-type, then trailers with grpc-status
and a percent-encoded grpc-message. Error texts are grpc-core's.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

from modelport.frontends.grpc.h2.messages import ACCEPT_ENCODING, INTERNAL, WireError

Header = tuple[bytes, bytes]
Headers = list[Header]

RESPONSE_HEADERS: list[Header] = [
    (b":status", b"200"),
    (b"content-type", b"application/grpc"),
    (b"grpc-accept-encoding", ACCEPT_ENCODING),
]
OK_TRAILERS: list[Header] = [(b"grpc-status", b"0")]

# grpc-timeout units in seconds.
_UNITS = {ord("H"): 3600.0, ord("M"): 60.0, ord("S"): 1.0, ord("m"): 1e-3, ord("u"): 1e-6, ord("n"): 1e-9}
# What grpc-message carries unencoded: printable ASCII except '%'.
_PLAIN = re.compile(rb"[\x20-\x24\x26-\x7e]*")


class Metadatum(NamedTuple):
    """One invocation metadata entry, as grpc's `context.invocation_metadata()` gives it."""

    key: str
    value: str | bytes


@dataclass(slots=True)
class RequestHead:
    """The parts of a request's headers the server acts on."""

    method: bytes = b""
    path: bytes = b""
    content_type: bytes = b""
    timeout: bytes | None = None
    encoding: bytes | None = None
    metadata: tuple[Metadatum, ...] = ()


def parse_request(headers: Iterable[Header]) -> RequestHead:
    """Sort `headers` into a RequestHead; WireError for binary metadata that is not base64."""
    head = RequestHead()
    metadata: list[Metadatum] = []
    for name, value in headers:
        if name[:1] == b":":
            if name == b":path":
                head.path = value
            elif name == b":method":
                head.method = value
        elif name.startswith(b"grpc-"):
            if name == b"grpc-timeout":
                head.timeout = value
            elif name == b"grpc-encoding":
                head.encoding = value
        elif name == b"content-type":
            head.content_type = value
        elif name != b"te":
            metadata.append(_metadatum(name, value))
    head.metadata = tuple(metadata)
    return head


def _metadatum(name: bytes, value: bytes) -> Metadatum:
    key = name.decode("latin-1").lower()
    if not key.endswith("-bin"):
        try:
            return Metadatum(key, value.decode("utf-8"))
        except UnicodeDecodeError:
            return Metadatum(key, value.decode("latin-1"))
    try:  # gRPC sends binary values unpadded
        return Metadatum(key, base64.b64decode(value + b"=" * (-len(value) % 4), validate=True))
    except binascii.Error:
        raise WireError(INTERNAL, f"Error parsing '{key}' metadata: illegal base64 encoding") from None


def timeout_seconds(value: bytes) -> float:
    """A grpc-timeout value (1-8 digits and a unit) in seconds."""
    unit = _UNITS.get(value[-1]) if 2 <= len(value) <= 9 else None
    digits = value[:-1]
    if unit is None or not digits.isdigit():
        raise WireError(INTERNAL, "Error parsing 'grpc-timeout' metadata")
    return int(digits) * unit


def percent_encoded(message: str) -> bytes:
    """`message` as a grpc-message value: UTF-8, bytes outside printable ASCII and '%' as %XX."""
    raw = message.encode("utf-8", "replace")
    if _PLAIN.fullmatch(raw):
        return raw
    return b"".join(bytes((b,)) if 0x20 <= b <= 0x7E and b != 0x25 else b"%%%02X" % b for b in raw)


def status_headers(code: int, message: str, trailing: Iterable[tuple[str, Any]] = ()) -> list[Header]:
    """grpc-status, grpc-message (when there is one) and trailing metadata."""
    if code == 0 and not message and not trailing:
        return OK_TRAILERS
    headers = [(b"grpc-status", b"%d" % code)]
    if message:
        headers.append((b"grpc-message", percent_encoded(message)))
    for key, value in trailing:
        headers.append(_metadata_header(key, value))
    return headers


def trailers_only(code: int, message: str, trailing: Iterable[tuple[str, Any]] = ()) -> list[Header]:
    """The one HEADERS frame of a call that ends before any response message."""
    return [*RESPONSE_HEADERS, *status_headers(code, message, trailing)]


def _metadata_header(key: str, value: Any) -> Header:
    name = key.lower().encode("latin-1")
    if name.endswith(b"-bin"):
        raw = value if isinstance(value, bytes) else str(value).encode("utf-8")
        return name, binascii.b2a_base64(raw, newline=False).rstrip(b"=")
    text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
    return name, text.encode("utf-8")
