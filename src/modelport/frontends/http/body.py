"""Reading request bodies under a size cap, and HTTP compression (gzip, deflate) both ways."""

from __future__ import annotations

import gzip
import zlib

from starlette.requests import Request
from starlette.types import Receive

from modelport.errors import InvalidInput, ModelportError, Unsupported


class BodyTooLarge(ModelportError):
    """The body exceeds --http-max-input-size (answered with 413)."""


class ClientDisconnected(Exception):
    """The client went away before it finished sending the body."""


async def read_body(request: Request, limit: int) -> bytes | bytearray:
    """The whole body of a Starlette request, refusing it as soon as it is known to exceed `limit`."""
    return await receive_body(request.receive, request.headers.get("content-length"), limit)


async def receive_body(receive: Receive, content_length: str | None, limit: int) -> bytes | bytearray:
    """The whole request body, refused (413) as soon as it is known to exceed `limit` bytes.

    With a Content-Length the chunks are copied once into a buffer of that size; the tensors of
    the request are then views of that buffer.
    """
    declared = int(content_length) if content_length is not None and content_length.isdigit() else None
    if declared is not None and declared > limit:
        raise BodyTooLarge(_too_large(declared, limit))
    message = await receive()
    chunk: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        if len(chunk) > limit:
            raise BodyTooLarge(_too_large(len(chunk), limit))
        return chunk
    if declared is None:  # chunked transfer encoding: the size is known at the end
        return await _join_chunks(receive, chunk, limit)
    buffer = bytearray(declared)
    view = memoryview(buffer)
    size = 0
    while True:
        end = size + len(chunk)
        if end > declared:  # the HTTP parser frames bodies by Content-Length; never expected
            raise InvalidInput(f"request body longer than its Content-Length of {declared} bytes")
        view[size:end] = chunk
        size = end
        if not message.get("more_body", False):
            return buffer if size == declared else buffer[:size]
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected()
        chunk = message.get("body", b"")


async def _join_chunks(receive: Receive, first: bytes, limit: int) -> bytes:
    chunks = [first]
    size = len(first)
    while True:
        if size > limit:
            raise BodyTooLarge(_too_large(size, limit))
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected()
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            break
    if size > limit:
        raise BodyTooLarge(_too_large(size, limit))
    return b"".join(chunks)


def _too_large(size: int, limit: int) -> str:
    return f"request body of at least {size} bytes exceeds the limit of {limit} bytes (--http-max-input-size)"


def decompress(body: bytes | bytearray, encoding: str | None, limit: int) -> bytes | bytearray:
    """Inflate a gzip or deflate (zlib or raw) body; other encodings are refused with 501.

    The compressed stream must end where the body ends: a truncated body is INVALID_ARG, not the
    part of the request that happened to arrive.
    """
    name = (encoding or "identity").strip().lower()
    if name in ("", "identity"):
        return body
    if name not in ("gzip", "deflate"):
        raise Unsupported("Unsupported compression type")
    # wbits 47 auto-detects zlib or gzip framing; raw deflate is the fallback.
    truncated = False
    for wbits in (47, -15):
        inflater = zlib.decompressobj(wbits)
        try:
            data = inflater.decompress(body, limit + 1)
        except zlib.error:
            continue
        if len(data) > limit:
            raise BodyTooLarge(f"decompressed request body exceeds the limit of {limit} bytes")
        if inflater.eof:
            return data
        truncated = True
    reason = ": the compressed data is truncated" if truncated else ""
    raise InvalidInput(f"failed to decompress the {name} request body{reason}")


def choose_encoding(accept: str | None) -> str | None:
    """The response encoding an Accept-Encoding header prefers among gzip and deflate, if any."""
    if not accept:
        return None
    best, best_q = None, 0.0
    for part in accept.split(","):
        name, _, params = part.strip().partition(";")
        q = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                q = float(params[2:])
            except ValueError:
                q = 0.0
        name = name.strip().lower()
        if name in ("gzip", "deflate", "identity") and q > best_q:
            best, best_q = name, q
    return best if best in ("gzip", "deflate") else None


def compress(body: bytes, encoding: str) -> bytes:
    if encoding == "gzip":
        return gzip.compress(body, compresslevel=6)
    return zlib.compress(body, 6)
