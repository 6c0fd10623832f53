"""The two Kubernetes manifests of docs/triton-compat.md (Triton's image and modelport's) and the container
command line in them, read without a YAML library (the deploy tests check this reading against PyYAML's)."""

from __future__ import annotations

import json
import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "triton-compat.md"
_BLOCK = re.compile(r"```yaml\n# manifest: (\w+)\n(.*?)```", re.DOTALL)


def manifests() -> dict[str, str]:
    """'triton' and 'modelport' -> the manifest's YAML text."""
    return {name: body for name, body in _BLOCK.findall(DOC.read_text(encoding="utf-8"))}


def container_command(manifest: str) -> list[str]:
    """The container's `command` (a flow list) followed by its `args` (a block list of plain scalars)."""
    command = re.search(r"^ +command: (\[.*\])$", manifest, re.MULTILINE)
    args = re.search(r"^( +)args:\n((?:\1  - .*\n)+)", manifest, re.MULTILINE)
    assert command is not None and args is not None, "the manifest has no command and args"
    items = [line.strip()[2:] for line in args.group(2).splitlines()]
    return [*json.loads(command.group(1)), *items]


def with_values(argv: list[str], values: dict[str, str]) -> list[str]:
    """`argv` with the value of each `--flag=value` named in `values` replaced (every flag must be there)."""
    found = {arg.split("=", 1)[0] for arg in argv}
    assert set(values) <= found, f"not in the manifest: {set(values) - found}"
    return [f"{arg.split('=', 1)[0]}={values[arg.split('=', 1)[0]]}" if arg.split("=", 1)[0] in values
            else arg for arg in argv]
