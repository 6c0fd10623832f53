"""Object-store emulators on 127.0.0.1 for the remote-repository tests, and uploads through fsspec.

S3 is moto's server, GCS is gcp-storage-emulator (both PyPI), Azure Blob is Azurite (npm, fetched by
`make test-tools`). Each runs as a subprocess on a free port and is stopped (by PID) afterwards.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support.server import HOST, free_port

START_TIMEOUT_S = 30.0
AZURE_ACCOUNT = "modelporttest"


@dataclass
class Emulator:
    """A running emulator: its endpoint and the environment a server needs to reach it."""

    endpoint: str
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None


def _wait_port(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {HOST}:{port} within {START_TIMEOUT_S} s")


@contextlib.contextmanager
def _running(command: list[str], port: int, what: str, env: Mapping[str, str] | None = None,
             cwd: Path | None = None) -> Iterator[subprocess.Popen[bytes]]:  # fmt: skip
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})}, cwd=cwd,
    )  # fmt: skip
    try:
        _wait_port(port, process, what)
        yield process
    finally:
        process.terminate()
        try:  # in-memory emulators hold nothing worth a slow exit (one lingers on open keep-alive sockets)
            process.wait(timeout=1)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def moto_s3(*, enforce_auth: bool = False, port: int = 0) -> Iterator[Emulator]:
    """moto's S3 server; with `enforce_auth` every request needs keys moto's IAM knows (none do)."""
    port = port or free_port()
    extra = {"INITIAL_NO_AUTH_ACTION_COUNT": "0"} if enforce_auth else {}
    command = [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)]
    env = {"AWS_ACCESS_KEY_ID": "modelport-test", "AWS_SECRET_ACCESS_KEY": secrets.token_hex(16),
           "AWS_DEFAULT_REGION": "us-east-1"}  # fmt: skip
    with _running(command, port, "moto S3 server", extra) as process:
        yield Emulator(f"http://{HOST}:{port}", env, process)


@contextlib.contextmanager
def gcs_emulator(workdir: Path) -> Iterator[Emulator]:
    port = free_port()
    binary = Path(sys.executable).parent / "gcp-storage-emulator"
    command = [str(binary), "start", "--host", HOST, "--port", str(port), "--in-memory"]
    with _running(command, port, "gcp-storage-emulator", cwd=workdir) as process:
        endpoint = f"http://{HOST}:{port}"
        yield Emulator(endpoint, {"STORAGE_EMULATOR_HOST": endpoint}, process)


@contextlib.contextmanager
def azurite(binary: Path) -> Iterator[Emulator]:
    """Azurite's blob server with one account whose key is made up for this run."""
    port = free_port()
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    command = [str(binary), "--blobHost", HOST, "--blobPort", str(port), "--inMemoryPersistence",
               "--skipApiVersionCheck"]  # fmt: skip
    with _running(command, port, "azurite", {"AZURITE_ACCOUNTS": f"{AZURE_ACCOUNT}:{key}"}) as process:
        endpoint = f"http://{HOST}:{port}/{AZURE_ACCOUNT}"
        env = {"AZURE_STORAGE_CONNECTION_STRING": azure_connection(endpoint, key)}
        yield Emulator(endpoint, env, process)


def azure_connection(endpoint: str, key: str) -> str:
    return (f"DefaultEndpointsProtocol=http;AccountName={AZURE_ACCOUNT};AccountKey={key};"
            f"BlobEndpoint={endpoint};")  # fmt: skip


def filesystem(scheme: str, emulator: Emulator) -> Any:
    """A client of the emulator, as the tests' uploader."""
    if scheme == "s3":
        from s3fs import S3FileSystem

        return S3FileSystem(skip_instance_cache=True, endpoint_url=emulator.endpoint,
                                 key=emulator.env["AWS_ACCESS_KEY_ID"],
                                 secret=emulator.env["AWS_SECRET_ACCESS_KEY"])  # fmt: skip
    if scheme == "gs":
        from gcsfs.core import GCSFileSystem

        return GCSFileSystem(skip_instance_cache=True, endpoint_url=emulator.endpoint, token="anon")
    from adlfs import AzureBlobFileSystem

    return AzureBlobFileSystem(skip_instance_cache=True,
                             connection_string=emulator.env["AZURE_STORAGE_CONNECTION_STRING"])  # fmt: skip


def upload_tree(fs: Any, local: Path, remote: str) -> None:
    """Every file under `local` to `remote/<relative path>`; an empty folder (an ensemble's version) as a
    zero-byte folder marker `<path>/`, the way object stores keep one."""
    for path in sorted(local.rglob("*")):
        key = f"{remote}/{path.relative_to(local).as_posix()}"
        if path.is_file():
            fs.pipe_file(key, path.read_bytes())
        elif path.is_dir() and not any(path.iterdir()):
            fs.pipe_file(key + "/", b"")

