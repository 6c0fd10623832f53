"""`--cache-config` and `--response-cache-byte-size`, parsed as tritonserver parses them."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelport.cli.cache_flags import parse_cache_flags, split_cache_option
from modelport.cli.main import build_parser, settings_from_args
from modelport.config.settings import ServerSettings


def _settings(repo: Path, *args: str) -> ServerSettings:
    return settings_from_args(build_parser().parse_args(["serve", "--model-repository", str(repo), *args]))


def test_no_flag_no_cache(tmp_path: Path) -> None:
    assert _settings(tmp_path).response_cache_size is None


def test_local_size_in_either_spelling(tmp_path: Path) -> None:
    assert _settings(tmp_path, "--cache-config=local,size=1048576").response_cache_size == 1048576
    assert _settings(tmp_path, "--cache-config", "local,size=8192").response_cache_size == 8192
    assert parse_cache_flags(["local,size=1", "local,size=2"]).size == 2  # the last size counts


def test_the_deprecated_byte_size_flag_warns_with_tritons_text(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _settings(tmp_path, "--response-cache-byte-size", "4096").response_cache_size == 4096
    assert (
        "Warning: '--response-cache-byte-size' has been deprecated! This will default to the 'local' "
        "cache implementation with the provided byte size for its config. Please use '--cache-config' "
        "instead. The equivalent --cache-config CLI args would be: '--cache-config=local,size=4096'"
    ) in capsys.readouterr().err


def test_an_unknown_local_setting_is_a_warning() -> None:
    flags = parse_cache_flags(["local,size=100", "local,shards=4"])
    assert flags.size == 100
    assert flags.warnings == (
        "warning: --cache-config local,shards=4: the local cache has no setting 'shards'; ignored",
    )


@pytest.mark.parametrize(
    ("entries", "byte_size", "message"),
    [
        (["size=100"], None,
         "No cache specified. --cache-config option format is <cache name>,<setting>=<value>. Got size=100"),
        ([",size=100"], None, "No cache specified."),
        (["local"], None, "No cache specified."),
        (["local,size"], None,
         "--cache-config option format is '<cache name>,<setting>=<value>'. Got local,size"),
        (["local,=5"], None, "option format is '<cache name>,<setting>=<value>'. Got local,=5"),
        (["local,size="], None, "--cache-config option format is"),
        (["local,size=8192", "redis,host=x"], None,
         "found multiple cache configurations, but only a single cache is currently supported"),
        (["redis,host=localhost"], None, "unknown cache 'redis'"),
        (["local,other=1"], None,
         "Failed to initialize LocalCache: config didn't contain a valid 'size' field."),
        (["local,size=big"], None, "Failed to initialize LocalCache: 'size' must be a positive number"),
        (["local,size=0"], None, "'size' must be a positive number of bytes, got '0'"),
        (["local,size=-5"], None, "'size' must be a positive number of bytes"),
        (["local,size=67890"], "12345",
         "Incompatible flags --response-cache-byte-size and --cache-config both provided. "
         "Please provide one or the other."),
        ([], "lots", "Invalid option value. Got lots"),
        ([], "99999999999999999999", "Provided option value is out of bound. Got 99999999999999999999"),
        ([], "0", "'size' must be a positive number of bytes, got '0'"),
    ],
)  # fmt: skip
def test_malformed_flags_are_refused(entries: list[str], byte_size: str | None, message: str) -> None:
    with pytest.raises(ValueError) as error:
        parse_cache_flags(entries, byte_size)
    assert message in str(error.value)


def test_a_refused_flag_stops_the_server_with_the_message(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="found multiple cache configurations"):
        _settings(tmp_path, "--cache-config=local,size=8192", "--cache-config=redis,key=value")


def test_the_value_keeps_everything_after_the_first_equals_sign() -> None:
    assert split_cache_option("redis,password=a=b") == ("redis", "password", "a=b")
