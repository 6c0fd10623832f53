"""Take the README's picture of the status page: a real server, real traffic, headless chromium.

    PYTHONPATH=src python scripts/screenshot_status_page.py [--output docs/status-page.png]

It builds the tests' small models in a temporary repository (one with two versions split 90/10, one
whose config does not parse), serves them, sends traffic of changing concurrency with tritonclient
while the page polls, and saves the screenshot. Needs Debian's `chromium` (`make test-tools`).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import tritonclient.http as httpclient

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the test tooling: model builders, server process, browser

from support.browser import chromium, screenshot  # noqa: E402
from support.models import small_models, write_broken_config  # noqa: E402
from support.server import HOST, free_port, running_server  # noqa: E402


def _inputs(names: tuple[str, ...], batch: int, width: int) -> list[httpclient.InferInput]:
    inputs = []
    for name in names:
        tensor = httpclient.InferInput(name, [batch, width], "FP32")
        tensor.set_data_from_numpy(np.random.rand(batch, width).astype(np.float32))
        inputs.append(tensor)
    return inputs


def _send(url: str, stop: threading.Event, lane: int, active: list[int]) -> None:
    """One client; it sends only while `lane` is below the current concurrency in `active[0]`."""
    with httpclient.InferenceServerClient(url) as client:
        while not stop.is_set():
            if lane >= active[0]:
                time.sleep(0.01)
                continue
            client.infer("add_sub", _inputs(("INPUT0", "INPUT1"), 1 + lane % 3, 16))
            client.infer("add_versions", _inputs(("INPUT0",), 1, 4))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "status-page.png")
    args = parser.parse_args()
    if chromium() is None:
        raise SystemExit("chromium is not installed (`make test-tools` as root installs it)")
    with tempfile.TemporaryDirectory(prefix="modelport-status-page-") as tmp:
        repo = Path(tmp) / "models"
        repo.mkdir()
        small_models.write_add_sub(repo)
        small_models.write_add_versions(repo)
        write_broken_config(repo)
        metrics = ["--allow-metrics=true", f"--metrics-port={free_port()}", f"--metrics-address={HOST}"]
        with running_server(repo, Path(tmp) / "server.log", ["--exit-on-error=false", *metrics]) as server:
            split = {"weights": {"1": 90, "2": 10}}
            httpx.post(f"{server.base_url}/v2/models/add_versions/traffic", json=split).raise_for_status()
            stop, active = threading.Event(), [1]
            lanes = [threading.Thread(target=_send, args=(server.url, stop, i, active)) for i in range(6)]
            for lane in lanes:
                lane.start()

            def vary() -> None:  # so the charts show a changing load, not a flat line
                for concurrency in (1, 2, 4, 6, 3, 1, 5, 2) * 20:
                    if stop.wait(0.25):
                        return
                    active[0] = concurrency

            varying = threading.Thread(target=vary)
            varying.start()
            try:
                time.sleep(0.5)
                screenshot(f"{server.base_url}/ui", args.output, budget_ms=90_000, size=(1280, 1080))
            finally:
                stop.set()
                for thread in (*lanes, varying):
                    thread.join()
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
