"""A real headless browser for pages the server serves: Debian's `chromium`, run once per page load.

`--virtual-time-budget` lets the page's timers (its polling) run before the DOM is dumped or the
screenshot taken; network requests still go to the real server.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

BROWSER_TIMEOUT_S = 30.0


def chromium() -> str | None:
    """The browser's command, or None where it is not installed (`make test-tools` installs it)."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _run(url: str, budget_ms: int, *extra: str) -> subprocess.CompletedProcess[str]:
    command = chromium()
    assert command is not None, "chromium is not installed"
    with tempfile.TemporaryDirectory(prefix="modelport-chromium-") as profile:
        args = [
            command, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}", *extra, url,
        ]
        return subprocess.run(args, capture_output=True, text=True, timeout=BROWSER_TIMEOUT_S, check=True)


def dump_dom(url: str, budget_ms: int = 8000) -> str:
    """The page's DOM after its scripts ran for `budget_ms` of virtual time."""
    return _run(url, budget_ms, "--dump-dom").stdout


def screenshot(url: str, path: Path, budget_ms: int = 8000, size: tuple[int, int] = (1280, 1400)) -> None:
    """A PNG of the page after its scripts ran for `budget_ms` of virtual time."""
    _run(url, budget_ms, f"--screenshot={path.resolve()}", f"--window-size={size[0]},{size[1]}",
         "--hide-scrollbars")
