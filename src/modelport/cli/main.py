"""`modelport serve ...`: tritonserver's flag names, parsed once into ServerSettings."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from modelport import __version__
from modelport.cli.env_flags import EnvironmentDefaults, describe_environment
from modelport.cli.env_flags import HelpFormatter as EnvHelpFormatter
from modelport.cli.gpu_flags import add_gpu_metric_flags, gpu_metric_settings
from modelport.cli.repository_flags import add_repository_flags, repository_roots
from modelport.cli.triton_flags import DEST as IGNORED_DEST
from modelport.config.settings import RESTRICTED_CATEGORIES, ServerSettings
from modelport.observability.logging import configure_logging


def parse_bool(value: str) -> bool:
    """A tritonserver boolean flag value: true/false, 1/0, yes/no, on/off."""
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean, got '{value}'")


def _flag(parser: argparse.ArgumentParser, name: str, default: bool, help_text: str) -> None:
    """A boolean flag usable bare (`--x`) or with a value (`--x=false`), as tritonserver's are."""
    parser.add_argument(name, type=parse_bool, nargs="?", const=True, default=default, help=help_text)


def build_parser() -> argparse.ArgumentParser:
    """modelport's command line: `serve` (alias `tritonserver`), `traffic` and `tune`."""
    return _build_parsers()[0]


def _build_parsers() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """The top-level parser and its `serve` subparser."""
    parser = argparse.ArgumentParser(prog="modelport", description="Triton-compatible model server.")
    parser.add_argument("--version", action="version", version=f"modelport {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    # `modelport tritonserver ...` is `serve`: an image whose entrypoint is modelport then runs a container
    # whose arguments start with `tritonserver`, as Triton's images do.
    serve = commands.add_parser("serve", aliases=["tritonserver"], help="serve a model repository",
                                formatter_class=EnvHelpFormatter)
    add_repository_flags(serve)
    serve.add_argument("--model-control-mode", choices=["none", "poll", "explicit"], default="none")
    serve.add_argument("--load-model", action="append", default=[], help="model to load in explicit mode")
    _flag(serve, "--load-on-demand", False,
          "explicit mode: an inference request for a model in the repository that is not loaded loads it")
    serve.add_argument("--model-memory-budget", default=None, metavar="<bytes>|<size>|<percent>%",
                       help="explicit mode: memory the loaded models may hold (500000000, 2GiB, 25%%); the "
                            "least recently used idle models are unloaded to make room")
    serve.add_argument("--model-memory-accounting", choices=["files", "process"], default="files",
                       help="what the memory budget bounds: files (each model counts as its folder "
                            "size) or process (the server's resident memory above its baseline; Linux)")
    serve.add_argument("--model-config-name", default=None, metavar="<name>",
                       help="each model reads <model>/configs/<name>.pbtxt when it exists, else config.pbtxt")
    serve.add_argument("--repository-poll-secs", type=float, default=15.0)
    _flag(serve, "--strict-readiness", True, "ready only when every model is ready")
    _flag(serve, "--exit-on-error", False, "exit at startup when a model fails to load")
    serve.add_argument("--exit-timeout-secs", type=float, default=30.0)
    serve.add_argument("--disable-auto-complete-config", action="store_true",
                       help="do not complete missing config from the model files")
    serve.add_argument("--strict-model-config", type=parse_bool, nargs="?", const=True, default=None,
                       help="deprecated: same as --disable-auto-complete-config when true")
    serve.add_argument("--backend-config", action="append", default=[],
                       help="[<backend>,]<key>=<value>, e.g. onnxruntime,default-max-batch-size=8")
    serve.add_argument("--id", default="modelport", help="server name in server metadata")
    _flag(serve, "--allow-http", True, "serve HTTP/REST")
    serve.add_argument("--http-address", default="0.0.0.0")
    serve.add_argument("--http-port", type=int, default=8000)
    serve.add_argument("--http-max-input-size", type=int, default=64 * 1024 * 1024)
    serve.add_argument("--http-restricted-api", action="append", default=[], metavar="<apis>:<key>=<value>",
                       help="HTTP requests to these APIs need header <key> with value <value> (repeatable); "
                            f"APIs: {', '.join(RESTRICTED_CATEGORIES)}")
    _flag(serve, "--allow-grpc", True, "serve gRPC")
    serve.add_argument("--grpc-address", default="0.0.0.0")
    serve.add_argument("--grpc-port", type=int, default=8001)
    serve.add_argument("--grpc-restricted-protocol", action="append", default=[],
                       metavar="<protocols>:<key>=<value>",
                       help="gRPC calls of these protocols need metadata triton-grpc-protocol-<key> with "
                            "value <value> (repeatable); protocols as for --http-restricted-api")
    _grpc_flags(serve)
    serve.add_argument("--frontend-workers", type=_frontend_workers, default=0, metavar="N|auto",
                       help="N processes serve the HTTP and gRPC ports (sharing them) and hand requests to "
                            "this one, which runs the models: protocol work on more cores for many client "
                            "connections; auto = one per CPU, at most 16; 0 = all in this process")
    _flag(serve, "--allow-metrics", True, "serve Prometheus metrics")
    serve.add_argument("--metrics-address", default="")
    serve.add_argument("--metrics-port", type=int, default=8002)
    serve.add_argument("--log-verbose", type=int, default=0)
    _flag(serve, "--log-info", True, "log informational messages")
    _flag(serve, "--log-warning", True, "log warnings")
    _flag(serve, "--log-error", True, "log errors")
    _observability_flags(serve)
    serve.add_argument("--cache-config", action="append", default=[], metavar="<cache>,<setting>=<value>",
                       help="response cache: local,size=<bytes> (models opt in with response_cache)")
    serve.add_argument("--response-cache-byte-size", help="deprecated: --cache-config local,size=<bytes>")
    serve.add_argument("--rate-limit", default="off", metavar="off|execution_count",
                       help="execution_count: an instance runs only when the resources its rate_limiter "
                            "config lists are free; off: rate_limiter configs are ignored")
    serve.add_argument("--rate-limit-resource", action="append", default=[],
                       metavar="<name>:<count>[:<device>]",
                       help="copies of a rate-limiter resource (per device, or on every device; repeatable); "
                            "by default, the most any one instance needs")
    from modelport.cli.traffic import add_traffic_parser
    from modelport.cli.triton_flags import add_unimplemented_flags
    from modelport.cli.tune import add_tune_parser

    add_unimplemented_flags(serve)  # last: a flag defined above is never shadowed
    describe_environment(serve, IGNORED_DEST)

    add_traffic_parser(commands)
    add_tune_parser(commands)
    return parser, serve


def _observability_flags(serve: argparse.ArgumentParser) -> None:
    """Metrics options, log format and file, and tracing, with tritonserver's flag names."""
    _flag(serve, "--allow-cpu-metrics", True, "report nv_cpu_* (CPU utilisation and memory)")
    add_gpu_metric_flags(serve, parse_bool)
    serve.add_argument("--metrics-config", action="append", default=[], metavar="<key>=<value>",
                       help="counter_latencies=<bool> (Triton's *_duration_us counters), "
                            "histograms=<bool> (modelport's latency and batch-size histograms)")
    serve.add_argument("--log-format", choices=["default", "ISO8601", "json"], default="default")
    serve.add_argument("--log-file", default="", help="append logs to this file instead of stderr")
    serve.add_argument("--trace-config", action="append", default=[], metavar="[<mode>,]<setting>=<value>",
                       help="level=OFF|TIMESTAMPS|TENSORS, rate=N, count=N, mode=triton|opentelemetry, "
                            "triton,file=PATH, triton,log-frequency=N, opentelemetry,url=URL, "
                            "opentelemetry,resource=<key>=<value>")


_METRICS_CONFIG = {"counter_latencies": "metrics_counter_latencies", "histograms": "metrics_histograms"}
_TRITON_ONLY_METRICS_CONFIG = ("summary_latencies", "summary_quantiles", "histogram_latencies")


def _observability_settings(args: argparse.Namespace) -> dict[str, object]:
    from modelport.cli.trace_flags import parse_trace_config

    values: dict[str, object] = {"allow_cpu_metrics": args.allow_cpu_metrics, **gpu_metric_settings(args)}
    for entry in args.metrics_config:
        key, sep, value = entry.partition("=")
        if not sep:
            raise SystemExit(f"--metrics-config '{entry}' must look like <key>=<value>")
        if key in _TRITON_ONLY_METRICS_CONFIG:
            print(f"warning: --metrics-config {key} is not supported; ignored", file=sys.stderr)
            continue
        if key not in _METRICS_CONFIG:
            raise SystemExit(f"--metrics-config '{entry}': unknown key '{key}'")
        try:
            values[_METRICS_CONFIG[key]] = parse_bool(value)
        except argparse.ArgumentTypeError as exc:
            raise SystemExit(f"--metrics-config '{entry}': {exc}") from None
    try:
        values["trace_config"] = parse_trace_config(args.trace_config)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    values["log_format"] = args.log_format
    values["log_file"] = args.log_file
    return values


def _frontend_workers(value: str) -> int:
    from modelport.frontends.workers.options import worker_count

    try:
        return worker_count(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a count from 0 or 'auto', got '{value}'") from None


def _grpc_flags(serve: argparse.ArgumentParser) -> None:
    """gRPC message limits, TLS and keepalive; TLS and keepalive names and defaults are tritonserver's."""
    defaults = ServerSettings()
    serve.add_argument("--grpc-max-receive-message-size", type=int,
                       default=defaults.grpc_max_receive_message_size,
                       help="largest gRPC request in bytes (larger ones get RESOURCE_EXHAUSTED)")
    serve.add_argument("--grpc-max-send-message-size", type=int,
                       default=defaults.grpc_max_send_message_size, help="largest gRPC response in bytes")
    _flag(serve, "--grpc-use-ssl", False, "serve gRPC over TLS (with --grpc-server-cert, --grpc-server-key)")
    _flag(serve, "--grpc-use-ssl-mutual", False, "TLS checking client certificates with --grpc-root-cert")
    serve.add_argument("--grpc-server-cert", default="", help="PEM server certificate file")
    serve.add_argument("--grpc-server-key", default="", help="PEM server private key file")
    serve.add_argument("--grpc-root-cert", default="", help="PEM root certificate file (client verification)")
    serve.add_argument("--grpc-keepalive-time", type=int, default=defaults.grpc_keepalive_time, help="ms")
    serve.add_argument("--grpc-keepalive-timeout", type=int, default=defaults.grpc_keepalive_timeout,
                       help="ms")
    _flag(serve, "--grpc-keepalive-permit-without-calls", False, "keepalive pings with no call in flight")
    serve.add_argument("--grpc-http2-max-pings-without-data", type=int,
                       default=defaults.grpc_http2_max_pings_without_data)
    serve.add_argument("--grpc-http2-min-recv-ping-interval-without-data", type=int,
                       default=defaults.grpc_http2_min_recv_ping_interval_without_data, help="ms")
    serve.add_argument("--grpc-http2-max-ping-strikes", type=int,
                       default=defaults.grpc_http2_max_ping_strikes)
    serve.add_argument("--grpc-max-connection-age", type=int, default=0, help="ms; 0 = unlimited")
    serve.add_argument("--grpc-max-connection-age-grace", type=int, default=0, help="ms; 0 = unlimited")
    serve.add_argument("--grpc-stack", choices=["h2", "aio"], default="h2",
                       help="gRPC server: h2 (HTTP/2 on the h2 library, faster) or aio (grpc.aio); "
                            "frontend workers always use aio")


_GRPC_SETTINGS = (
    "grpc_max_receive_message_size", "grpc_max_send_message_size", "grpc_use_ssl", "grpc_use_ssl_mutual",
    "grpc_server_cert", "grpc_server_key", "grpc_root_cert", "grpc_keepalive_time",
    "grpc_keepalive_timeout", "grpc_keepalive_permit_without_calls", "grpc_http2_max_pings_without_data",
    "grpc_http2_min_recv_ping_interval_without_data", "grpc_http2_max_ping_strikes",
    "grpc_max_connection_age", "grpc_max_connection_age_grace", "grpc_stack",
)


def _grpc_settings(args: argparse.Namespace) -> dict[str, object]:
    if args.grpc_max_receive_message_size <= 0 or args.grpc_max_send_message_size <= 0:
        raise SystemExit("--grpc-max-receive-message-size and --grpc-max-send-message-size must be positive")
    if args.grpc_use_ssl or args.grpc_use_ssl_mutual:
        for flag in ("--grpc-server-cert", "--grpc-server-key"):
            path = getattr(args, flag[2:].replace("-", "_"))
            if not path or not Path(path).is_file():
                raise SystemExit(f"--grpc-use-ssl needs {flag} to name a readable PEM file, got '{path}'")
        if args.grpc_use_ssl_mutual and not (args.grpc_root_cert and Path(args.grpc_root_cert).is_file()):
            raise SystemExit(f"--grpc-use-ssl-mutual needs --grpc-root-cert, got '{args.grpc_root_cert}'")
    return {name: getattr(args, name) for name in _GRPC_SETTINGS}


def parse_backend_config(values: Sequence[str]) -> dict[str, dict[str, str]]:
    """`[<backend>,]<key>=<value>` entries grouped by backend ('' = every backend)."""
    result: dict[str, dict[str, str]] = {}
    for value in values:
        scope, _, setting = value.rpartition(",")
        key, sep, item = setting.partition("=")
        if not sep or not key:
            raise SystemExit(f"--backend-config '{value}' must look like [<backend>,]<key>=<value>")
        result.setdefault(scope, {})[key] = item
    return result


def _restriction_settings(args: argparse.Namespace) -> dict[str, object]:
    from modelport.cli.restricted_flags import parse_grpc_restricted_protocols, parse_http_restricted_apis

    try:
        return {
            "http_restricted_apis": parse_http_restricted_apis(args.http_restricted_api),
            "grpc_restricted_protocols": parse_grpc_restricted_protocols(args.grpc_restricted_protocol),
        }
    except ValueError as exc:
        raise SystemExit(str(exc)) from None


def settings_from_args(args: argparse.Namespace) -> ServerSettings:
    if args.load_model and args.model_control_mode != "explicit":
        raise SystemExit("Use of '--load-model' requires setting '--model-control-mode=explicit' as well.")
    roots, remotes = repository_roots(args)
    any_port = (args.allow_http and args.http_port == 0) or (args.allow_grpc and args.grpc_port == 0)
    if args.frontend_workers and any_port:
        raise SystemExit("--frontend-workers needs fixed ports: the workers share them (0 picks one each)")
    if args.model_config_name == "":
        raise SystemExit("Error: empty argument for --model-config-name")
    auto_complete = not args.disable_auto_complete_config
    if args.strict_model_config is not None:
        print(
            "warning: --strict-model-config is deprecated; use --disable-auto-complete-config",
            file=sys.stderr,
        )
        auto_complete = auto_complete and not args.strict_model_config
    return ServerSettings(
        model_repositories=roots,
        remote_repositories=remotes,
        model_control_mode=args.model_control_mode,
        load_models=tuple(args.load_model),
        repository_poll_secs=args.repository_poll_secs,
        strict_readiness=args.strict_readiness,
        exit_on_error=args.exit_on_error,
        exit_timeout_secs=args.exit_timeout_secs,
        auto_complete_config=auto_complete,
        model_config_name=args.model_config_name or "",
        backend_config=parse_backend_config(args.backend_config),
        server_id=args.id,
        frontend_workers=args.frontend_workers,
        allow_http=args.allow_http,
        http_address=args.http_address,
        http_port=args.http_port,
        http_max_input_size=args.http_max_input_size,
        allow_grpc=args.allow_grpc,
        grpc_address=args.grpc_address,
        grpc_port=args.grpc_port,
        **_grpc_settings(args),  # type: ignore[arg-type]
        **_restriction_settings(args),  # type: ignore[arg-type]
        allow_metrics=args.allow_metrics,
        metrics_address=args.metrics_address,
        metrics_port=args.metrics_port,
        log_verbose=args.log_verbose,
        log_info=args.log_info,
        log_warning=args.log_warning,
        log_error=args.log_error,
        **_observability_settings(args),  # type: ignore[arg-type]
        response_cache_size=_response_cache_size(args),
        **_rate_limit_settings(args),  # type: ignore[arg-type]
        **_on_demand_settings(args),  # type: ignore[arg-type]
    )


def _on_demand_settings(args: argparse.Namespace) -> dict[str, object]:
    from modelport.cli import ondemand_flags as flags

    try:
        text = args.model_memory_budget
        flags.check_on_demand_flags(args.model_control_mode, args.load_on_demand, text)
        budget = None if text is None else flags.parse_memory_budget(text)
        flags.check_memory_accounting(args.model_memory_accounting, budget)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    return {"load_on_demand": args.load_on_demand, "model_memory_budget": budget,
            "model_memory_accounting": args.model_memory_accounting}  # fmt: skip


def _rate_limit_settings(args: argparse.Namespace) -> dict[str, object]:
    from modelport.cli.rate_limit_flags import parse_rate_limit, parse_rate_limit_resources

    try:
        return {
            "rate_limit": parse_rate_limit(args.rate_limit),
            "rate_limit_resources": parse_rate_limit_resources(args.rate_limit_resource),
        }
    except ValueError as exc:
        raise SystemExit(str(exc)) from None


def _response_cache_size(args: argparse.Namespace) -> int | None:
    from modelport.cli.cache_flags import parse_cache_flags

    try:
        flags = parse_cache_flags(args.cache_config, args.response_cache_byte_size)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    for warning in flags.warnings:
        print(warning, file=sys.stderr)
    return flags.size


def parse_args(
    argv: Sequence[str] | None, environ: Mapping[str, str]
) -> tuple[argparse.Namespace, EnvironmentDefaults]:
    """The command line, with `serve` flags it does not give taken from MODELPORT_* in `environ`;
    also the EnvironmentDefaults that explain an error about a flag set by a variable."""
    parser, serve = _build_parsers()
    defaults = EnvironmentDefaults.apply(serve, environ, IGNORED_DEST)
    return defaults.finish(parser.parse_args(argv)), defaults


def main(argv: Sequence[str] | None = None) -> int:
    args, env_defaults = parse_args(argv, os.environ)
    if args.command == "traffic":
        from modelport.cli.traffic import run_traffic

        return run_traffic(args)
    if args.command == "tune":
        from modelport.cli.tune import run_tune

        return run_tune(args)
    if args.command in ("serve", "tritonserver"):
        try:
            settings = settings_from_args(args)
        except SystemExit as exc:
            if isinstance(exc.code, str):
                raise SystemExit(env_defaults.explain(exc.code)) from None
            raise
        logs = configure_logging(settings)
        _warn_unimplemented_flags(args)
        _warn_unrestricted_repository(settings)
        from modelport.cli.allocator import tune_malloc
        from modelport.cli.serve import serve

        tune_malloc()

        try:
            return _run(serve(settings, logs))
        finally:
            logs.close()
    return 2


def _warn_unimplemented_flags(args: argparse.Namespace) -> None:
    from modelport.cli.triton_flags import unimplemented_flag_warnings

    for warning in unimplemented_flag_warnings(args):
        logging.getLogger("modelport.server").warning("%s", warning)


def _warn_unrestricted_repository(settings: ServerSettings) -> None:
    from modelport.frontends.restrictions import unrestricted_repository_warning

    warning = unrestricted_repository_warning(settings)
    if warning is not None:
        logging.getLogger("modelport.server").warning(warning)


def _run(coro: object) -> int:
    try:
        import uvloop

        result: int = uvloop.run(coro)  # type: ignore[arg-type]
    except ImportError:
        result = asyncio.run(coro)  # type: ignore[arg-type]
    return result
