"""tritonserver 2.51 flags that modelport accepts and ignores, so a Triton command line runs unchanged.

The names and argument kinds come from `tritonserver --help` (2.51.0). Every one of these takes one
argument (`--flag=value` or `--flag value`), as tritonserver's do; a boolean may also stand bare,
like modelport's own boolean flags. Each flag given logs one warning naming it; a flag that is
neither Triton's nor modelport's still fails with argparse's error.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

# flag -> the argument kind `tritonserver --help` shows for it
UNIMPLEMENTED: dict[str, str] = {
    "--model-load-thread-count": "<integer>",
    "--model-load-retry-count": "<integer>",
    "--model-namespacing": "<boolean>",
    "--enable-peer-access": "<boolean>",
    "--reuse-http-port": "<boolean>",
    "--http-header-forward-pattern": "<string>",
    "--http-thread-count": "<integer>",
    "--reuse-grpc-port": "<boolean>",
    "--grpc-header-forward-pattern": "<string>",
    "--grpc-infer-allocation-pool-size": "<integer>",
    "--grpc-infer-response-compression-level": "<string>",
    "--allow-sagemaker": "<boolean>",
    "--sagemaker-port": "<integer>",
    "--sagemaker-safe-port-range": "<<integer>-<integer>>",
    "--sagemaker-thread-count": "<integer>",
    "--allow-vertex-ai": "<boolean>",
    "--vertex-ai-port": "<integer>",
    "--vertex-ai-thread-count": "<integer>",
    "--vertex-ai-default-model": "<string>",
    "--backend-directory": "<string>",
    "--repoagent-directory": "<string>",
    "--cache-directory": "<string>",
    "--pinned-memory-pool-byte-size": "<integer>",
    "--cuda-memory-pool-byte-size": "<<integer>:<integer>>",
    "--cuda-virtual-address-size": "<<integer>:<integer>>",
    "--min-supported-compute-capability": "<float>",
    "--buffer-manager-thread-count": "<integer>",
    "--host-policy": "<<string>,<string>=<string>>",
    "--model-load-gpu-limit": "<<device_id>:<fraction>>",
    "--trace-file": "<string>",
    "--trace-level": "<string>",
    "--trace-rate": "<integer>",
    "--trace-count": "<integer>",
    "--trace-log-frequency": "<integer>",
}
DEST = "unimplemented_triton_flags"
_BOOLEAN = "<boolean>"


class _Ignored(argparse.Action):
    """Takes the flag's argument and records the flag (each once, in order) for one warning."""

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option: Any = None
    ) -> None:
        seen = list(getattr(namespace, DEST, None) or [])
        if self.option_strings[0] not in seen:
            seen.append(self.option_strings[0])
        setattr(namespace, DEST, seen)


def add_unimplemented_flags(parser: argparse.ArgumentParser) -> None:
    """Accept each flag of UNIMPLEMENTED that `parser` does not define itself."""
    group = parser.add_argument_group(
        "tritonserver flags modelport accepts and ignores (each logs a warning)"
    )
    for flag, kind in UNIMPLEMENTED.items():
        if flag in parser._option_string_actions:  # implemented meanwhile: the real flag wins
            continue
        nargs = "?" if kind == _BOOLEAN else None
        group.add_argument(flag, action=_Ignored, nargs=nargs, metavar=kind, dest=DEST, default=None)


def unimplemented_flag_warnings(args: argparse.Namespace) -> list[str]:
    """One warning per ignored tritonserver flag given on the command line."""
    flags: Sequence[str] = getattr(args, DEST, None) or ()
    return [f"tritonserver flag {flag} is not supported by modelport and is ignored" for flag in flags]
