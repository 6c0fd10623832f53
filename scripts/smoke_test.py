#!/usr/bin/env python3
"""Smoke-test a running modelport (or Triton) server over HTTP: is it live, ready, does it serve the model,
and does a real request come back with the expected top class.

    python scripts/smoke_test.py                          # http://127.0.0.1:8000, mobilenet_v2, cat photo
    python scripts/smoke_test.py http://127.0.0.1:8000 --model mobilenet_v2 --expect cat
    python scripts/smoke_test.py http://svc:8000 --wait 300        # retry until ready (after a deploy)
    python scripts/smoke_test.py URL --model tiny --input ramp --expect cat   # any model, synthetic input
    python scripts/smoke_test.py --model image_classifier           # JPEG bytes in, labels out (ensemble)

Checks, in order: GET /v2/health/live, GET /v2/health/ready, GET /v2 (server metadata),
GET /v2/models/<model>/ready, GET /v2/models/<model> (model metadata), then POST /v2/models/<model>/infer with
its inputs, asking for the classification extension's top-k of the output (a BYTES output is read as labels
already), and checks that the top-1 label contains --expect (case-insensitive).

Inputs (--input):
  auto   image-shaped FP32 inputs ([3,H,W] or [H,W,3]) get the photo, a one-element BYTES input the photo
         file itself (models that decode images, such as the image_classifier ensemble), the rest the ramp
  image  a photo (--image PATH, else scikit-image's cat "chelsea"), preprocessed like the example classifier
         (scripts/generate_input.py; needs numpy, Pillow, and scikit-image for the bundled photo)
  ramp   0, 1, 2, ... in the input's shape (batch 1, dynamic dims 1); needs only the standard library

Exit codes: 0 every check passed, 1 a check failed (not ready, unknown model, wrong answer, HTTP error),
3 the server could not be reached, 4 the input could not be built here (missing package or photo).
(2 is argparse's: bad command line.)
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

DEFAULT_URL = "http://127.0.0.1:8000"
EXIT_OK, EXIT_FAILED, EXIT_UNREACHABLE, EXIT_NO_INPUT = 0, 1, 3, 4


class CheckFailed(Exception):
    """A check did not pass; the message says which and why."""


class Unreachable(Exception):
    """Nothing answered at the URL."""


class InputUnavailable(Exception):
    """The request body could not be built on this machine."""


class Client:
    """Tiny JSON-over-HTTP client (standard library only)."""

    def __init__(self, base_url: str, timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def request(self, method: str, path: str, body: bytes | None = None,
                json_length: int | None = None) -> tuple[int, Any]:
        """`json_length`: the body is a JSON header of that length followed by binary tensor data."""
        request = urllib.request.Request(self.base_url + path, data=body, method=method)
        if body is not None and json_length is None:
            request.add_header("Content-Type", "application/json")
        elif body is not None:
            request.add_header("Content-Type", "application/octet-stream")
            request.add_header("Inference-Header-Content-Length", str(json_length))
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.status, _decode(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, _decode(exc.read())
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise Unreachable(f"{method} {self.base_url}{path}: {reason}") from exc

    def get_ok(self, path: str, what: str) -> Any:
        status, payload = self.request("GET", path)
        if status != 200:
            raise CheckFailed(f"{what}: GET {path} returned HTTP {status}{_error_suffix(payload)}")
        return payload


def _decode(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


def _error_suffix(payload: Any) -> str:
    if isinstance(payload, dict) and "error" in payload:
        return f": {payload['error']}"
    if isinstance(payload, str) and payload:
        return f": {payload[:200]}"
    return ""


# ----------------------------------------------------------------------------------------------------
# inputs

def _is_image_shaped(datatype: str, shape: list[int], batched: bool) -> bool:
    dims = shape[1:] if batched else shape
    return datatype == "FP32" and len(dims) == 3 and (dims[0] == 3 or dims[-1] == 3)


def _concrete_shape(shape: list[int]) -> list[int]:
    """Batch and any other dynamic dimension (-1) become 1."""
    return [1 if d < 0 else d for d in shape]


def ramp_tensor(shape: list[int], datatype: str) -> list[Any]:
    count = math.prod(shape)
    if datatype == "BOOL":
        return [i % 2 == 1 for i in range(count)]
    if datatype == "BYTES":
        return [str(i) for i in range(count)]
    if datatype.startswith(("INT", "UINT")):
        return list(range(count))
    return [float(i) for i in range(count)]


def image_tensor(shape: list[int], image_path: Path | None) -> list[float]:
    """The preprocessed photo, flattened, as the example classifier expects it ([1,3,224,224] FP32)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    try:
        import numpy as np
        import PIL  # noqa: F401  (generate_input imports it lazily; fail here, clearly)
        from generate_input import load_image, load_sample, preprocess
    except ImportError as exc:
        raise InputUnavailable(
            f"the image input needs numpy and Pillow ({exc}); pip install numpy pillow scikit-image, "
            "or use --input ramp"
        ) from exc
    try:
        image = load_image(image_path) if image_path is not None else load_sample("chelsea")
    except SystemExit as exc:  # generate_input reports a missing scikit-image this way
        raise InputUnavailable(f"{exc}; or pass --image PATH") from exc
    except ImportError as exc:
        raise InputUnavailable(f"reading the photo needs {exc.name or exc}; pip install pillow scikit-image, "
                               "or use --input ramp") from exc
    except OSError as exc:
        raise InputUnavailable(f"cannot read image {image_path}: {exc}") from exc
    chw = preprocess(image)
    if shape[-1] == 3 and shape[-3] != 3:  # HWC models
        chw = chw.transpose(1, 2, 0)
    if math.prod(chw.shape) != math.prod(shape):
        raise InputUnavailable(f"the photo preprocesses to {list(chw.shape)}, the model wants {shape}; "
                               "use --input ramp")
    return [float(x) for x in np.asarray(chw, dtype=np.float32).ravel()]


def image_file_bytes(image_path: Path | None) -> bytes:
    """The photo as an encoded file (JPEG for the bundled one), for models that decode images themselves."""
    if image_path is not None:
        try:
            return image_path.read_bytes()
        except OSError as exc:
            raise InputUnavailable(f"cannot read image {image_path}: {exc}") from exc
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    try:
        import io

        from generate_input import load_sample
        from PIL import Image
    except ImportError as exc:
        raise InputUnavailable(f"the photo needs numpy and Pillow ({exc}); pip install numpy pillow "
                               "scikit-image, or pass --image PATH") from exc
    try:
        image = load_sample("chelsea")
    except SystemExit as exc:  # generate_input reports a missing scikit-image this way
        raise InputUnavailable(f"{exc}; or pass --image PATH") from exc
    encoded = io.BytesIO()
    Image.fromarray(image).save(encoded, format="JPEG")
    return encoded.getvalue()


# ----------------------------------------------------------------------------------------------------
# the checks

def run_checks(args: argparse.Namespace, say: Callable[[str], None]) -> None:
    client = Client(args.url, args.timeout)
    version = f"/versions/{args.model_version}" if args.model_version else ""
    model_path = f"/v2/models/{args.model}{version}"

    _wait_until_ready(client, args.wait, say)
    client.get_ok("/v2/health/live", "server liveness")
    say("ok   live")
    client.get_ok("/v2/health/ready", "server readiness")
    say("ok   ready")
    server = client.get_ok("/v2", "server metadata")
    say(f"ok   server metadata: {server.get('name')} {server.get('version')}")

    client.get_ok(model_path + "/ready", f"model '{args.model}' readiness")
    say(f"ok   model {args.model} ready")
    metadata = client.get_ok(model_path, f"model '{args.model}' metadata")
    inputs, outputs = metadata.get("inputs") or [], metadata.get("outputs") or []
    if not inputs or not outputs:
        raise CheckFailed(f"model metadata of '{args.model}' lists no inputs or no outputs: {metadata}")
    say(f"ok   model metadata: inputs {[i['name'] for i in inputs]}, outputs {[o['name'] for o in outputs]}")

    body, json_length = _build_request(args, metadata, inputs, outputs)
    start = time.perf_counter()
    status, payload = client.request("POST", model_path + "/infer", body, json_length)
    elapsed_ms = (time.perf_counter() - start) * 1000
    if status != 200:
        raise CheckFailed(
            f"inference: POST {model_path}/infer returned HTTP {status}{_error_suffix(payload)}"
        )
    top = _top1(payload)
    if args.expect.lower() not in top.lower():
        raise CheckFailed(f"inference: top-1 class is '{top}', expected it to contain '{args.expect}'")
    say(f"ok   inference in {elapsed_ms:.0f} ms: top-1 '{top}' contains '{args.expect}'")


def _wait_until_ready(client: Client, wait: float, say: Callable[[str], None]) -> None:
    """With --wait, poll readiness (tolerating refused connections) until it passes or time runs out."""
    if wait <= 0:
        return
    deadline = time.monotonic() + wait
    last = ""
    while time.monotonic() < deadline:
        try:
            status, _ = client.request("GET", "/v2/health/ready")
            if status == 200:
                return
            last = f"HTTP {status}"
        except Unreachable as exc:
            last = str(exc)
        time.sleep(min(2.0, max(0.0, deadline - time.monotonic())))
    say(f"...  still not ready after {wait:g} s ({last}); checking anyway")


def _build_request(args: argparse.Namespace, metadata: dict[str, Any], inputs: list[dict[str, Any]],
                   outputs: list[dict[str, Any]]) -> tuple[bytes, int | None]:
    """The infer body and, when it carries binary tensor data, the length of its JSON header.

    Image-shaped FP32 inputs get the preprocessed photo; a BYTES input of one element gets the photo
    file itself (a model that decodes images); the rest a ramp. A BYTES output is taken as already
    holding labels, any other output is asked for the classification extension's top-k.
    """
    by_name = {o["name"]: o for o in outputs}
    output_name = args.output or outputs[0]["name"]
    if output_name not in by_name:
        raise CheckFailed(f"model '{args.model}' has no output '{output_name}'")
    tensors, blobs = [], []
    for spec in inputs:
        shape, datatype = _concrete_shape(list(spec["shape"])), spec["datatype"]
        batched = bool(spec["shape"]) and spec["shape"][0] == -1
        tensor: dict[str, Any] = {"name": spec["name"], "datatype": datatype, "shape": shape}
        if datatype == "BYTES" and args.input != "ramp" and math.prod(shape) == 1:
            photo = image_file_bytes(args.image)
            blobs.append(len(photo).to_bytes(4, "little") + photo)
            tensor["parameters"] = {"binary_data_size": len(blobs[-1])}
        else:
            use_image = args.input == "image" or (
                args.input == "auto" and _is_image_shaped(datatype, list(spec["shape"]), batched)
            )
            tensor["data"] = image_tensor(shape, args.image) if use_image else ramp_tensor(shape, datatype)
        tensors.append(tensor)
    output: dict[str, Any] = {"name": output_name}
    if by_name[output_name]["datatype"] != "BYTES":
        output["parameters"] = {"classification": args.top_k}
    header = json.dumps({"inputs": tensors, "outputs": [output]}, separators=(",", ":")).encode("utf-8")
    if not blobs:
        return header, None
    return header + b"".join(blobs), len(header)


def _top1(payload: Any) -> str:
    """The first classification entry: "score:index[:label]" -> "label (score)" or "index (score)"."""
    try:
        entry = payload["outputs"][0]["data"][0]
    except (KeyError, IndexError, TypeError) as exc:
        raise CheckFailed(f"inference: unexpected response shape: {str(payload)[:300]}") from exc
    parts = str(entry).split(":", 2)
    if len(parts) < 2:
        raise CheckFailed(f"inference: '{entry}' is not a classification result (score:index[:label])")
    label = parts[2] if len(parts) == 3 else parts[1]
    return f"{label} ({parts[0]})"


# ----------------------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="exit codes: 0 pass, 1 check failed, 3 unreachable, 4 no input")
    parser.add_argument("url", nargs="?", default=DEFAULT_URL,
                        help=f"server HTTP URL (default {DEFAULT_URL})")
    parser.add_argument("--model", default="mobilenet_v2", help="model to query (default mobilenet_v2)")
    parser.add_argument("--model-version", default="", help="model version (default: the server's choice)")
    parser.add_argument("--expect", default="cat",
                        help="text the top-1 class must contain, case-insensitive (default 'cat')")
    parser.add_argument("--input", choices=("auto", "image", "ramp"), default="auto",
                        help="request data: the photo, a 0,1,2,... ramp, or auto by input shape (default)")
    parser.add_argument("--image", type=Path, default=None, help="photo to send (default: the bundled cat)")
    parser.add_argument("--output", default="", help="output to classify (default: the model's first)")
    parser.add_argument("--top-k", type=int, default=5, help="classes to ask for (default 5)")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="per-request timeout in seconds (default 30)")
    parser.add_argument("--wait", type=float, default=0.0,
                        help="first wait up to this many seconds for readiness (default 0: no waiting)")
    parser.add_argument("--quiet", action="store_true", help="print only failures")
    args = parser.parse_args(argv)
    if args.top_k < 1:
        parser.error("--top-k must be >= 1")
    if not args.url.startswith(("http://", "https://")):
        args.url = "http://" + args.url
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def say(line: str) -> None:
        if not args.quiet:
            print(line, flush=True)

    say(f"smoke test of {args.url} (model {args.model}, expecting '{args.expect}')")
    try:
        run_checks(args, say)
    except Unreachable as exc:
        print(f"FAIL cannot reach the server: {exc}\n     Is it running, and is the port-forward "
              f"(make port-forward) up?", file=sys.stderr)
        return EXIT_UNREACHABLE
    except InputUnavailable as exc:
        print(f"FAIL cannot build the request input: {exc}", file=sys.stderr)
        return EXIT_NO_INPUT
    except CheckFailed as exc:
        print(f"FAIL {exc}", file=sys.stderr)
        return EXIT_FAILED
    say("PASS")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
