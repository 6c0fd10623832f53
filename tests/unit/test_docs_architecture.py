"""docs/architecture.md names only modules and packages that exist, and every package of the code."""

from __future__ import annotations

import re
from pathlib import Path

import modelport

PACKAGE = Path(modelport.__file__).parent
DOC = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"
# `backends/batching.py`, `frontends/workers/`, `scheduling`: code spans that look like package paths.
PATH = re.compile(r"`([a-z_0-9]+(?:/[a-z_0-9]+)*(?:\.py|/)?)`")


def test_every_named_module_exists() -> None:
    text = DOC.read_text(encoding="utf-8")
    packages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and not p.name.startswith("__")}
    named = [m for m in PATH.findall(text) if m.split("/")[0] in packages]
    assert len(named) > 30
    missing = [m for m in named if not (PACKAGE / m.rstrip("/")).exists()]
    assert not missing, f"docs/architecture.md names modules that do not exist: {missing}"


def test_every_package_is_in_the_layer_table() -> None:
    text = DOC.read_text(encoding="utf-8")
    packages = sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and not p.name.startswith("__"))
    absent = [p for p in packages if f"`{p}`" not in text]
    assert not absent, f"packages missing from docs/architecture.md: {absent}"
