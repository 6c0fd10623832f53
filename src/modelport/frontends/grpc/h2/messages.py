"""gRPC messages in a stream's DATA: the 5-byte prefix, the size limit and request decompression.

A message is a compressed flag (0 or 1), a big-endian 32-bit length, then the bytes. The length
is checked against the receive limit before anything is buffered, and what a compressed message
inflates to is bounded by the same limit. Status codes and messages are grpc-core's.
"""

from __future__ import annotations

import zlib

# The gRPC status numbers this stack answers with itself (grpc.StatusCode values).
CANCELLED = 1
UNKNOWN = 2
DEADLINE_EXCEEDED = 4
RESOURCE_EXHAUSTED = 8
UNIMPLEMENTED = 12
INTERNAL = 13
UNAVAILABLE = 14

PREFIX_SIZE = 5
# The request encodings this server decompresses (grpc's names) and their zlib window bits.
ENCODINGS: dict[bytes, int] = {b"gzip": 16 + zlib.MAX_WBITS, b"deflate": zlib.MAX_WBITS}
ACCEPT_ENCODING = b"identity, deflate, gzip"

Message = bytes | bytearray | memoryview


class WireError(Exception):
    """A request the call ends with gRPC status `code` and `message` (sent to the client)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def encoding_bits(encoding: bytes | None) -> int:
    """zlib window bits for a request's grpc-encoding, 0 for identity; UNIMPLEMENTED when unknown."""
    if encoding is None or encoding == b"identity":
        return 0
    bits = ENCODINGS.get(encoding)
    if bits is None:
        name = encoding.decode("latin-1")
        raise WireError(UNIMPLEMENTED, f"Compression algorithm '{name}' is disabled.")
    return bits


def framed(payload: bytes) -> bytes:
    """`payload` as one uncompressed gRPC message."""
    return b"\x00" + len(payload).to_bytes(4, "big") + payload


def prefix(length: int) -> bytes:
    """The prefix of an uncompressed message of `length` bytes (sent before a large payload)."""
    return b"\x00" + length.to_bytes(4, "big")


class MessageReader:
    """Splits one stream's request DATA into whole messages.

    The usual unary request (one DATA frame holding exactly one message) is answered without
    buffering; otherwise the pieces of a message are kept until its last byte arrives.
    """

    __slots__ = ("_bits", "_chunks", "_flag", "_head", "_limit", "_missing")

    def __init__(self, limit: int, bits: int) -> None:
        self._limit = limit
        self._bits = bits  # 0: identity
        self._head = b""  # a prefix split across frames
        self._chunks: list[Message] = []
        self._missing = -1  # bytes of the current message still to come; -1: between messages
        self._flag = 0

    @property
    def partial(self) -> bool:
        """Whether the data so far ends inside a message."""
        return bool(self._head) or self._missing >= 0

    def feed(self, data: bytes) -> list[Message]:
        """The messages `data` completes; WireError for one over the limit or not decodable."""
        if self._missing < 0 and not self._head and len(data) >= PREFIX_SIZE:
            length = int.from_bytes(data[1:5], "big")
            if len(data) == PREFIX_SIZE + length:
                self._check(data[0], length)
                return [self._finish(data[0], memoryview(data)[PREFIX_SIZE:])]
        return self._split(memoryview(data))

    def _split(self, view: memoryview) -> list[Message]:
        out: list[Message] = []
        pos, end = 0, len(view)
        while pos < end:
            if self._missing < 0:
                take = min(PREFIX_SIZE - len(self._head), end - pos)
                self._head += view[pos : pos + take]
                pos += take
                if len(self._head) < PREFIX_SIZE:
                    break
                flag, length = self._head[0], int.from_bytes(self._head[1:5], "big")
                self._head = b""
                self._check(flag, length)
                self._flag, self._missing = flag, length
            take = min(self._missing, end - pos)
            if take:
                self._chunks.append(view[pos : pos + take])
                pos += take
                self._missing -= take
            if self._missing == 0:
                chunks, self._chunks, self._missing = self._chunks, [], -1
                body: Message = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                out.append(self._finish(self._flag, body))
        return out

    def _check(self, flag: int, length: int) -> None:
        if length > self._limit:
            raise WireError(
                RESOURCE_EXHAUSTED, f"SERVER: Received message larger than max ({length} vs. {self._limit})"
            )
        if flag > 1:
            raise WireError(INTERNAL, "Bad compression flag")
        if flag and not self._bits:
            raise WireError(INTERNAL, "Compression bit set but no encoding configured")

    def _finish(self, flag: int, body: Message) -> Message:
        if not flag:
            return body
        inflate = zlib.decompressobj(self._bits)
        try:
            out = inflate.decompress(body, self._limit + 1)
        except zlib.error:
            raise WireError(INTERNAL, "Decompression failed due to zlib error") from None
        if len(out) > self._limit:
            raise WireError(RESOURCE_EXHAUSTED, "Decompressed message larger than max")
        if not inflate.eof:
            raise WireError(INTERNAL, "Decompression failed due to zlib error")
        return out
