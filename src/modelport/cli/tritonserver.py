"""The `tritonserver` command: a Triton command line (`tritonserver --model-repository=/models ...`) run
as `modelport serve` with the same flags, so a container spec written for Triton's image runs modelport.

Installed as a console script only by the companion distribution in deploy/tritonserver-compat (the
`tritonserver-compat` extra), and always present in modelport's images.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from modelport.cli.main import main as modelport_main


def main(argv: Sequence[str] | None = None) -> int:
    """Run `modelport tritonserver <argv>` (= `modelport serve`); argv defaults to the command line."""
    return modelport_main(["tritonserver", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
