"""Model version states as Triton reports them, with the reason for an unavailable version."""

from __future__ import annotations

import enum
from dataclasses import dataclass

# The reason of a version that was unloaded on purpose; such versions do not count against strict readiness.
UNLOADED = "unloaded"


class ModelState(enum.Enum):
    UNKNOWN = "UNKNOWN"
    LOADING = "LOADING"
    READY = "READY"
    UNLOADING = "UNLOADING"
    UNAVAILABLE = "UNAVAILABLE"


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """One row of the repository index: a model, or one of its versions, and its state."""

    name: str
    version: str = ""
    state: ModelState | None = None
    reason: str = ""

    def to_json(self) -> dict[str, str]:
        row = {"name": self.name}
        if self.version:
            row["version"] = self.version
        if self.state is not None:
            row["state"] = self.state.value
        if self.reason:
            row["reason"] = self.reason
        return row
