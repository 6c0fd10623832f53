"""ModelportError -> gRPC status, from the one table in frontends/status.py."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from modelport.errors import ErrorCode, ModelportError
from modelport.frontends.status import STATUS, grpc_status_name
from modelport.observability.redaction import hide_paths

log = logging.getLogger(__name__)

GRPC_CODES: dict[ErrorCode, grpc.StatusCode] = {
    code: grpc.StatusCode[grpc_status_name(code)] for code in STATUS
}

_Handler = TypeVar("_Handler", bound=Callable[..., Awaitable[Any]])


def grpc_code(code: ErrorCode) -> grpc.StatusCode:
    return GRPC_CODES[code]


def internal_message(exc: BaseException) -> str:
    return f"internal server error: {type(exc).__name__}: {hide_paths(str(exc))}"


def unary_errors(handler: _Handler) -> _Handler:
    """End a unary RPC with the status of the ModelportError it raised; anything else is INTERNAL."""

    @functools.wraps(handler)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await handler(self, request, context)
        except grpc.aio.AbortError:
            raise
        except ModelportError as exc:
            await context.abort(grpc_code(exc.code), exc.message)
        except Exception as exc:
            log.exception("internal error in %s", handler.__name__)
            await context.abort(grpc.StatusCode.INTERNAL, internal_message(exc))

    return wrapper  # type: ignore[return-value]
