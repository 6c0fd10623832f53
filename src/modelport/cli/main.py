"""`modelport serve ...`: tritonserver's flag names, parsed once into ServerSettings."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from modelport import __version__
from modelport.config.settings import ServerSettings
from modelport.observability.logging import configure_logging


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean, got '{value}'")


def _flag(parser: argparse.ArgumentParser, name: str, default: bool, help_text: str) -> None:
    """A boolean flag usable bare (`--x`) or with a value (`--x=false`), as tritonserver's are."""
    parser.add_argument(name, type=_bool, nargs="?", const=True, default=default, help=help_text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modelport", description="Triton-compatible model server.")
    parser.add_argument("--version", action="version", version=f"modelport {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve a model repository")
    serve.add_argument("--model-repository", "--model-store", action="append", required=True, type=Path,
                       help="model repository folder (repeatable)")
    serve.add_argument("--model-control-mode", choices=["none", "poll", "explicit"], default="none")
    serve.add_argument("--load-model", action="append", default=[], help="model to load in explicit mode")
    serve.add_argument("--repository-poll-secs", type=float, default=15.0)
    _flag(serve, "--strict-readiness", True, "ready only when every model is ready")
    _flag(serve, "--exit-on-error", False, "exit at startup when a model fails to load")
    serve.add_argument("--exit-timeout-secs", type=float, default=30.0)
    serve.add_argument("--disable-auto-complete-config", action="store_true",
                       help="do not complete missing config from the model files")
    serve.add_argument("--strict-model-config", type=_bool, nargs="?", const=True, default=None,
                       help="deprecated: same as --disable-auto-complete-config when true")
    serve.add_argument("--backend-config", action="append", default=[],
                       help="[<backend>,]<key>=<value>, e.g. onnxruntime,default-max-batch-size=8")
    serve.add_argument("--id", default="modelport", help="server name in server metadata")
    _flag(serve, "--allow-http", True, "serve HTTP/REST")
    serve.add_argument("--http-address", default="0.0.0.0")
    serve.add_argument("--http-port", type=int, default=8000)
    serve.add_argument("--http-max-input-size", type=int, default=64 * 1024 * 1024)
    _flag(serve, "--allow-grpc", True, "serve gRPC")
    serve.add_argument("--grpc-address", default="0.0.0.0")
    serve.add_argument("--grpc-port", type=int, default=8001)
    _flag(serve, "--allow-metrics", True, "serve Prometheus metrics")
    serve.add_argument("--metrics-address", default="")
    serve.add_argument("--metrics-port", type=int, default=8002)
    serve.add_argument("--log-verbose", type=int, default=0)
    _flag(serve, "--log-info", True, "log informational messages")
    _flag(serve, "--log-warning", True, "log warnings")
    _flag(serve, "--log-error", True, "log errors")
    return parser


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


def settings_from_args(args: argparse.Namespace) -> ServerSettings:
    if args.load_model and args.model_control_mode != "explicit":
        raise SystemExit("Use of '--load-model' requires setting '--model-control-mode=explicit' as well.")
    for repo in args.model_repository:
        if not repo.is_dir():
            raise SystemExit(f"--model-repository '{repo}' is not a folder")
    auto_complete = not args.disable_auto_complete_config
    if args.strict_model_config is not None:
        print("warning: --strict-model-config is deprecated; use --disable-auto-complete-config", file=sys.stderr)
        auto_complete = auto_complete and not args.strict_model_config
    return ServerSettings(
        model_repositories=tuple(p.resolve() for p in args.model_repository),
        model_control_mode=args.model_control_mode,
        load_models=tuple(args.load_model),
        repository_poll_secs=args.repository_poll_secs,
        strict_readiness=args.strict_readiness,
        exit_on_error=args.exit_on_error,
        exit_timeout_secs=args.exit_timeout_secs,
        auto_complete_config=auto_complete,
        backend_config=parse_backend_config(args.backend_config),
        server_id=args.id,
        allow_http=args.allow_http,
        http_address=args.http_address,
        http_port=args.http_port,
        http_max_input_size=args.http_max_input_size,
        allow_grpc=args.allow_grpc,
        grpc_address=args.grpc_address,
        grpc_port=args.grpc_port,
        allow_metrics=args.allow_metrics,
        metrics_address=args.metrics_address,
        metrics_port=args.metrics_port,
        log_verbose=args.log_verbose,
        log_info=args.log_info,
        log_warning=args.log_warning,
        log_error=args.log_error,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        settings = settings_from_args(args)
        configure_logging(settings.log_verbose, settings.log_info, settings.log_warning, settings.log_error)
        from modelport.cli.serve import serve

        return _run(serve(settings))
    return 2


def _run(coro: object) -> int:
    try:
        import uvloop

        result: int = uvloop.run(coro)  # type: ignore[arg-type]
    except ImportError:
        result = asyncio.run(coro)  # type: ignore[arg-type]
    return result
