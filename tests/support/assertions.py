"""Assertions shared by the integration tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from tritonclient.utils import InferenceServerException


def expect_error(call: Callable[[], Any], status: int, fragment: str) -> InferenceServerException:
    """`call` must raise tritonclient's exception with this HTTP status and message fragment."""
    with pytest.raises(InferenceServerException) as info:
        call()
    assert info.value.status() == str(status), info.value.message()
    assert fragment in (info.value.message() or ""), info.value.message()
    return info.value
