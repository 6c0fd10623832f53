"""Reading request bodies under a size cap, and HTTP compression (gzip, deflate) both ways."""

from __future__ import annotations

import gzip
import zlib

from starlette.requests import Request

from modelport.errors import InvalidInput, ModelportError, Unsupported


class BodyTooLarge(ModelportError):
    """The body exceeds --http-max-input-size (answered with 413)."""


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refusing it as soon as it is known to exceed `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(_too_large(int(declared), limit))
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(_too_large(size, limit))
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _too_large(size: int, limit: int) -> str:
    return f"request body of at least {size} bytes exceeds the limit of {limit} bytes (--http-max-input-size)"


def decompress(body: bytes, encoding: str | None, limit: int) -> bytes:
    """Inflate a gzip or deflate (zlib or raw) body; other encodings are refused with 501."""
    name = (encoding or "identity").strip().lower()
    if name in ("", "identity"):
        return body
    if name not in ("gzip", "deflate"):
        raise Unsupported("Unsupported compression type")
    # wbits 47 auto-detects zlib or gzip framing; raw deflate is the fallback.
    for wbits in (47, -15):
        inflater = zlib.decompressobj(wbits)
        try:
            data = inflater.decompress(body, limit + 1)
        except zlib.error:
            continue
        if len(data) > limit:
            raise BodyTooLarge(f"decompressed request body exceeds the limit of {limit} bytes")
        return data
    raise InvalidInput(f"failed to decompress the {name} request body")


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
