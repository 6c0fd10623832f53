"""Rewrite README.md's "Config blocks" table from src/modelport/config/coverage_table.py.

    PYTHONPATH=src python scripts/render_config_coverage.py

tests/unit/test_config_coverage.py fails while the README's table differs from the rendered one.
"""

from __future__ import annotations

import re
from pathlib import Path

from modelport.config.coverage import render_markdown

README = Path(__file__).resolve().parents[1] / "README.md"
START, END = "<!-- config-coverage:start -->", "<!-- config-coverage:end -->"


def main() -> None:
    text = README.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(START) + r"\n.*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise SystemExit(f"README.md has no {START} ... {END} section")
    README.write_text(pattern.sub(lambda _: f"{START}\n{render_markdown()}{END}", text), encoding="utf-8")


if __name__ == "__main__":
    main()
