"""gRPC over TLS (--grpc-use-ssl) and mutual TLS (--grpc-use-ssl-mutual), with self-signed certificates
made in the test (the `cryptography` package when installed, else the openssl command)."""

from __future__ import annotations

import datetime
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from integration.grpc_support import build_grpc_repository, running_grpc_server
from support.server import ServerProcess


@dataclass(frozen=True)
class KeyPair:
    cert: Path
    key: Path


def _with_cryptography(folder: Path, name: str) -> KeyPair | None:
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID
    except ImportError:
        return None
    import ipaddress

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    pair = KeyPair(folder / f"{name}.crt", folder / f"{name}.key")
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pair.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return pair


def _with_openssl(folder: Path, name: str) -> KeyPair:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the cryptography package or the openssl command to make a certificate")
    pair = KeyPair(folder / f"{name}.crt", folder / f"{name}.key")
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(pair.key), "-out", str(pair.cert), "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return pair


def self_signed(folder: Path, name: str) -> KeyPair:
    return _with_cryptography(folder, name) or _with_openssl(folder, name)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, KeyPair]:
    folder = tmp_path_factory.mktemp("certs")
    return {"server": self_signed(folder, "server"), "client": self_signed(folder, "client")}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_grpc_repository(tmp_path_factory.mktemp("grpc_tls_repo"))


@pytest.fixture(scope="module")
def tls_server(
    repo: Path, certs: dict[str, KeyPair], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    server = certs["server"]
    args = ["--grpc-use-ssl", f"--grpc-server-cert={server.cert}", f"--grpc-server-key={server.key}"]
    with running_grpc_server(repo, tmp_path_factory.mktemp("tls_logs") / "server.log", args) as proc:
        yield proc


@pytest.fixture(scope="module")
def mtls_server(
    repo: Path, certs: dict[str, KeyPair], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    server, client = certs["server"], certs["client"]
    args = [
        "--grpc-use-ssl-mutual",
        f"--grpc-server-cert={server.cert}",
        f"--grpc-server-key={server.key}",
        f"--grpc-root-cert={client.cert}",  # the client's self-signed certificate is its own root
    ]
    with running_grpc_server(repo, tmp_path_factory.mktemp("mtls_logs") / "server.log", args) as proc:
        yield proc


def add_sub(client: grpcclient.InferenceServerClient) -> np.ndarray:
    a = np.arange(16, dtype=np.float32).reshape(1, 16)
    inputs = [
        grpcclient.InferInput("INPUT0", [1, 16], "FP32"),
        grpcclient.InferInput("INPUT1", [1, 16], "FP32"),
    ]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(a)
    result: np.ndarray = client.infer("add_sub", inputs).as_numpy("OUTPUT0")
    return result


def test_tls_client_is_served(tls_server: ServerProcess, certs: dict[str, KeyPair]) -> None:
    with grpcclient.InferenceServerClient(
        tls_server.grpc_url, ssl=True, root_certificates=str(certs["server"].cert)
    ) as client:
        assert client.is_server_live()
        assert client.get_server_metadata().name == "modelport"
        np.testing.assert_array_equal(add_sub(client), np.arange(16, dtype=np.float32).reshape(1, 16) * 2)


def test_plaintext_client_is_refused_by_tls_server(tls_server: ServerProcess) -> None:
    with grpcclient.InferenceServerClient(tls_server.grpc_url) as client:
        with pytest.raises(InferenceServerException) as info:
            client.is_server_live(client_timeout=5)
        assert info.value.status() in ("StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED")


def test_untrusted_server_certificate_is_refused(
    tls_server: ServerProcess, certs: dict[str, KeyPair]
) -> None:
    # The client trusts only the other self-signed certificate, not the server's.
    with (
        grpcclient.InferenceServerClient(
            tls_server.grpc_url, ssl=True, root_certificates=str(certs["client"].cert)
        ) as client,
        pytest.raises(InferenceServerException),
    ):
        client.is_server_live(client_timeout=5)


def test_http_still_plain_beside_tls_grpc(tls_server: ServerProcess) -> None:
    import tritonclient.http as httpclient

    with httpclient.InferenceServerClient(tls_server.http_url) as client:
        assert client.is_server_live()


def test_mutual_tls_with_client_certificate(
    mtls_server: ServerProcess, certs: dict[str, KeyPair]
) -> None:
    with grpcclient.InferenceServerClient(
        mtls_server.grpc_url,
        ssl=True,
        root_certificates=str(certs["server"].cert),
        private_key=str(certs["client"].key),
        certificate_chain=str(certs["client"].cert),
    ) as client:
        assert client.is_server_ready()
        np.testing.assert_array_equal(add_sub(client), np.arange(16, dtype=np.float32).reshape(1, 16) * 2)


def test_mutual_tls_refuses_a_client_without_certificate(
    mtls_server: ServerProcess, certs: dict[str, KeyPair]
) -> None:
    with (
        grpcclient.InferenceServerClient(
            mtls_server.grpc_url, ssl=True, root_certificates=str(certs["server"].cert)
        ) as client,
        pytest.raises(InferenceServerException),
    ):
        client.is_server_live(client_timeout=5)
