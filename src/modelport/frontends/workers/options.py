"""WorkerOptions: what a frontend worker process is started with, and its one-line JSON form; the count."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from modelport.backends.devices import cpu_count
from modelport.config.settings import ServerSettings

MAX_WORKERS = 16


def worker_count(value: str) -> int:
    """`--frontend-workers`: a count, or 'auto' for one per CPU this process may run on, from 1 to 16."""
    if value.strip().lower() == "auto":
        return max(1, min(MAX_WORKERS, cpu_count()))
    count = int(value)
    if count < 0:
        raise ValueError(f"expected 'auto' or a count from 0, got {value}")
    return count


# The settings a worker needs: its ports, limits, gRPC TLS and keepalive, logging. The restricted
# APIs' header values (secrets) stay in the engine, which checks them; so does everything else.
_PREFIXES = ("http_", "grpc_", "log_")
_OTHERS = ("allow_http", "allow_grpc")
_ENGINE_ONLY = ("http_restricted_apis", "grpc_restricted_protocols")
WORKER_SETTINGS = tuple(
    f.name
    for f in dataclasses.fields(ServerSettings)
    if (f.name.startswith(_PREFIXES) or f.name in _OTHERS) and f.name not in _ENGINE_ONLY
)


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """One worker's start: its number, its engine and where to reach it, and its share of the settings."""

    index: int
    engine_pid: int
    link_path: str  # the engine's link socket
    engine_grpc: str  # the engine's private gRPC address (unix:...), "" when gRPC is off
    settings: ServerSettings
    grace_s: float  # at SIGTERM, how long requests in flight may take to finish

    def to_json(self) -> str:
        shared = {name: getattr(self.settings, name) for name in WORKER_SETTINGS}
        return json.dumps(
            {
                "index": self.index,
                "engine_pid": self.engine_pid,
                "link_path": self.link_path,
                "engine_grpc": self.engine_grpc,
                "settings": shared,
                "grace_s": self.grace_s,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> WorkerOptions:
        doc = json.loads(text)
        shared = {name: doc["settings"][name] for name in WORKER_SETTINGS}
        return cls(
            index=int(doc["index"]),
            engine_pid=int(doc["engine_pid"]),
            link_path=str(doc["link_path"]),
            engine_grpc=str(doc["engine_grpc"]),
            settings=ServerSettings(**shared),
            grace_s=float(doc["grace_s"]),
        )
