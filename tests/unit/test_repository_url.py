"""Object-store repository URLs (tritonserver's forms) and the secrets kept out of their error text."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelport.config.repository_url import is_remote, parse_repository_url
from modelport.repository.object_store import describe, scrub


@pytest.mark.parametrize(
    ("url", "scheme", "path", "endpoint", "account"),
    [
        ("s3://bucket/path/to/repo", "s3", "bucket/path/to/repo", "", ""),
        ("s3://bucket", "s3", "bucket", "", ""),
        ("s3://https://minio.local:9000/bucket/repo", "s3", "bucket/repo", "https://minio.local:9000", ""),
        ("s3://http://127.0.0.1:9000/bucket", "s3", "bucket", "http://127.0.0.1:9000", ""),
        ("s3://minio:9000/bucket/repo", "s3", "bucket/repo", "http://minio:9000", ""),
        ("gs://bucket/repo/", "gs", "bucket/repo", "", ""),
        ("as://account/container/repo", "as", "container/repo", "", "account"),
    ],
)
def test_triton_url_forms(url: str, scheme: str, path: str, endpoint: str, account: str) -> None:
    location = parse_repository_url(url)
    parsed = (location.scheme, location.path, location.endpoint, location.account)
    assert parsed == (scheme, path, endpoint, account)
    assert is_remote(url)


@pytest.mark.parametrize(
    "url", ["s3://", "gs://", "as://account", "s3://bucket/../etc", "s3://https:///b", "ftp://x/y"]
)
def test_malformed_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError):
        parse_repository_url(url)


def test_local_paths_are_not_remote() -> None:
    assert not is_remote("/models") and not is_remote("models/s3://x")


def test_mirror_folder_is_named_by_a_digest_not_the_url(tmp_path: Path) -> None:
    a = parse_repository_url("s3://bucket/a").cache_folder(tmp_path)
    b = parse_repository_url("s3://bucket/b").cache_folder(tmp_path)
    assert a.parent == b.parent == tmp_path and a != b and "bucket" not in a.name


def test_secrets_are_scrubbed_from_error_text() -> None:
    env = {"AWS_SECRET_ACCESS_KEY": "s3cr3t-value", "AZURE_STORAGE_KEY": "azkeyvalue=="}
    text = "failed with s3cr3t-value and AccountKey=abc123; url?sv=1&sig=zzz and azkeyvalue=="
    cleaned = scrub(text, env)
    assert "s3cr3t-value" not in cleaned and "abc123" not in cleaned and "zzz" not in cleaned
    assert "azkeyvalue" not in cleaned


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (PermissionError("The AWS Access Key Id you provided does not exist"), "access denied"),
        (FileNotFoundError("The specified bucket does not exist"), "does not exist"),
        (ConnectionRefusedError("refused"), "cannot reach the object store"),
    ],
)
def test_errors_name_the_cause(error: Exception, said: str) -> None:
    assert said in describe(error)
