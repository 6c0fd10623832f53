"""Clients for the integration tests: tritonclient.http (sync and asyncio) and raw httpx."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import tritonclient.http as httpclient

from support.server import ServerProcess

CLIENT_TIMEOUT_S = 30.0


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[httpclient.InferenceServerClient]:
    with httpclient.InferenceServerClient(
        server.url, connection_timeout=CLIENT_TIMEOUT_S, network_timeout=CLIENT_TIMEOUT_S
    ) as c:
        yield c


@pytest.fixture(scope="module")
def raw(server: ServerProcess) -> Iterator[httpx.Client]:
    """Plain HTTP for what tritonclient will not send (malformed bodies, odd headers)."""
    with httpx.Client(base_url=server.base_url, trust_env=False, timeout=CLIENT_TIMEOUT_S) as c:
        yield c


@pytest.fixture(scope="module")
def healthy_client(healthy_server: ServerProcess) -> Iterator[httpclient.InferenceServerClient]:
    with httpclient.InferenceServerClient(
        healthy_server.url, connection_timeout=CLIENT_TIMEOUT_S, network_timeout=CLIENT_TIMEOUT_S
    ) as c:
        yield c


@pytest.fixture(scope="module")
def healthy_raw(healthy_server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=healthy_server.base_url, trust_env=False, timeout=CLIENT_TIMEOUT_S) as c:
        yield c
