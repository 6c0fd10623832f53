"""ServerSettings: the process-wide options, built once by the CLI and passed down."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_MAX_BATCH_SIZE = 4


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """Server options; field names follow tritonserver's flags."""

    model_repositories: tuple[Path, ...] = ()
    model_control_mode: str = "none"  # none | poll | explicit
    load_models: tuple[str, ...] = ()
    repository_poll_secs: float = 15.0
    strict_readiness: bool = True
    exit_on_error: bool = False
    exit_timeout_secs: float = 30.0
    auto_complete_config: bool = True
    backend_config: dict[str, dict[str, str]] = field(default_factory=dict)
    server_id: str = "modelport"

    allow_http: bool = True
    http_address: str = "0.0.0.0"
    http_port: int = 8000
    http_max_input_size: int = 64 * 1024 * 1024
    allow_grpc: bool = True
    grpc_address: str = "0.0.0.0"
    grpc_port: int = 8001
    allow_metrics: bool = True
    metrics_address: str = ""
    metrics_port: int = 8002

    log_verbose: int = 0
    log_info: bool = True
    log_warning: bool = True
    log_error: bool = True

    def backend_setting(self, backend: str, key: str) -> str | None:
        """A --backend-config value for `backend`, falling back to the backend-less form."""
        for scope in (backend, ""):
            value = self.backend_config.get(scope, {}).get(key)
            if value is not None:
                return value
        return None

    def default_max_batch_size(self, backend: str) -> int:
        value = self.backend_setting(backend, "default-max-batch-size")
        return int(value) if value is not None else DEFAULT_MAX_BATCH_SIZE
