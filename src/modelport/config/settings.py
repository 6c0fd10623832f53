"""ServerSettings: the process-wide options, built once by the CLI and passed down."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from modelport.config.repository_url import RemoteRepository

DEFAULT_MAX_BATCH_SIZE = 4
GRPC_MAX_MESSAGE_SIZE = 2**31 - 1
# Triton's restricted API categories (--http-restricted-api, --grpc-restricted-protocol), in its order.
RESTRICTED_CATEGORIES = (
    "health", "metadata", "inference", "shared-memory", "model-config", "model-repository",
    "statistics", "trace", "logging",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Restriction:
    """A restricted API category: its requests must carry `header` with exactly `value`."""

    header: str  # as configured (gRPC: with Triton's "triton-grpc-protocol-" prefix)
    value: str


@dataclass(frozen=True, slots=True)
class RateLimitResource:
    """`--rate-limit-resource=<name>:<count>[:<device>]`: copies of a resource the server has."""

    name: str
    count: int
    device: int = -1  # -1: every device (a global resource takes its largest count, whatever the device)


@dataclass(frozen=True, slots=True)
class TraceConfig:
    """Startup trace settings from Triton's `--trace-config [<mode>,]<setting>=<value>` flags."""

    level: tuple[str, ...] = ("OFF",)  # OFF | TIMESTAMPS | TENSORS
    rate: int = 1000  # trace one request in `rate`
    count: int = -1  # stop after this many traces (-1: never)
    log_frequency: int = 0  # triton mode: write the file every N traces
    file: str = ""  # triton mode: where traces go
    mode: str = "triton"  # triton | opentelemetry
    otel_url: str = "http://localhost:4318/v1/traces"  # OTLP/HTTP endpoint
    otel_resource: tuple[tuple[str, str], ...] = ()  # extra resource attributes
    otel_bsp: tuple[tuple[str, int], ...] = ()  # BatchSpanProcessor options


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """Server options; field names follow tritonserver's flags."""

    model_repositories: tuple[Path, ...] = ()  # local roots; a remote root appears as its mirror folder
    remote_repositories: tuple[RemoteRepository, ...] = ()  # s3:// gs:// as:// roots and their mirrors
    model_control_mode: str = "none"  # none | poll | explicit
    load_models: tuple[str, ...] = ()
    repository_poll_secs: float = 15.0
    strict_readiness: bool = True
    exit_on_error: bool = False
    exit_timeout_secs: float = 30.0
    auto_complete_config: bool = True
    model_config_name: str = ""  # --model-config-name: each model prefers configs/<name>.pbtxt
    backend_config: dict[str, dict[str, str]] = field(default_factory=dict)
    server_id: str = "modelport"
    # --cache-config local,size=<bytes>: the response cache's size (None: no cache, as without the flag)
    response_cache_size: int | None = None
    # --rate-limit (off | execution_count) and --rate-limit-resource
    rate_limit: str = "off"
    rate_limit_resources: tuple[RateLimitResource, ...] = ()
    # --load-on-demand: an inference request for a known, unloaded model loads it (explicit mode only)
    load_on_demand: bool = False
    # --model-memory-budget: bytes the loaded models may hold; LRU idle models are unloaded for room
    model_memory_budget: int | None = None
    # --model-memory-accounting: "files" (a model counts as its folder size) or "process" (the budget
    # bounds the process's resident memory above its baseline)
    model_memory_accounting: str = "files"
    # Processes that own the HTTP and gRPC ports and hand requests to this one (0: serve them here).
    frontend_workers: int = 0

    allow_http: bool = True
    http_address: str = "0.0.0.0"
    http_port: int = 8000
    http_max_input_size: int = 64 * 1024 * 1024
    allow_grpc: bool = True
    grpc_address: str = "0.0.0.0"
    grpc_port: int = 8001
    # gRPC limits (bytes, both directions like Triton's INT32_MAX), TLS and keepalive (ms; Triton's defaults)
    grpc_max_receive_message_size: int = GRPC_MAX_MESSAGE_SIZE
    grpc_max_send_message_size: int = GRPC_MAX_MESSAGE_SIZE
    grpc_use_ssl: bool = False
    grpc_use_ssl_mutual: bool = False
    grpc_server_cert: str = ""
    grpc_server_key: str = ""
    grpc_root_cert: str = ""
    grpc_keepalive_time: int = 7_200_000
    grpc_keepalive_timeout: int = 20_000
    grpc_keepalive_permit_without_calls: bool = False
    grpc_http2_max_pings_without_data: int = 2
    grpc_http2_min_recv_ping_interval_without_data: int = 300_000
    grpc_http2_max_ping_strikes: int = 2
    grpc_max_connection_age: int = 0  # 0: unlimited
    grpc_max_connection_age_grace: int = 0  # 0: unlimited
    grpc_stack: str = "h2"  # h2 (the h2 library) | aio (grpc.aio)
    # Restricted APIs: category -> the header its requests need; a category left out is open to all.
    http_restricted_apis: Mapping[str, Restriction] = field(default_factory=dict)
    grpc_restricted_protocols: Mapping[str, Restriction] = field(default_factory=dict)
    allow_metrics: bool = True
    metrics_address: str = ""
    metrics_port: int = 8002
    allow_cpu_metrics: bool = True
    allow_gpu_metrics: bool = True  # nv_gpu_* through NVML, where there is a GPU
    metrics_interval_ms: float = 2000.0  # GPU readings are at most this old
    # --metrics-config: Triton's *_duration_us counters; modelport's latency / batch-size histograms
    metrics_counter_latencies: bool = True
    metrics_histograms: bool = True

    log_verbose: int = 0
    log_info: bool = True
    log_warning: bool = True
    log_error: bool = True
    log_format: str = "default"  # default | ISO8601 | json
    log_file: str = ""  # "" = stderr

    trace_config: TraceConfig = field(default_factory=TraceConfig)

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
