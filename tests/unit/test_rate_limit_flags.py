"""`--rate-limit` and `--rate-limit-resource`, parsed as tritonserver 2.51 parses them (its messages)."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelport.cli.main import build_parser, settings_from_args
from modelport.cli.rate_limit_flags import rate_limit_rows
from modelport.config.settings import RateLimitResource, ServerSettings


def _settings(repo: Path, *args: str) -> ServerSettings:
    return settings_from_args(build_parser().parse_args(["serve", "--model-repository", str(repo), *args]))


def test_off_by_default(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    assert (settings.rate_limit, settings.rate_limit_resources) == ("off", ())
    assert rate_limit_rows(settings) == [["rate_limit", "OFF"]]


@pytest.mark.parametrize("value", ["execution_count", "EXECUTION_COUNT", "Execution_Count"])
def test_the_mode_in_any_case(tmp_path: Path, value: str) -> None:
    assert _settings(tmp_path, f"--rate-limit={value}").rate_limit == "execution_count"
    assert _settings(tmp_path, "--rate-limit", "OFF").rate_limit == "off"


def test_resources_per_device_and_for_every_device(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path, "--rate-limit=execution_count", "--rate-limit-resource=R1:10",
        "--rate-limit-resource", "R2:5:0", "--rate-limit-resource=R2:8:1", "--rate-limit-resource=R2:3:-1",
    )  # fmt: skip
    assert settings.rate_limit_resources == (
        RateLimitResource("R1", 10, -1), RateLimitResource("R2", 5, 0), RateLimitResource("R2", 8, 1),
        RateLimitResource("R2", 3, -1),
    )  # fmt: skip
    assert rate_limit_rows(settings)[1:] == [
        ["rate_limit_resource[0]", '{"name":"R1", "count":10 "device":-1}'],
        ["rate_limit_resource[1]", '{"name":"R2", "count":5 "device":0}'],
        ["rate_limit_resource[2]", '{"name":"R2", "count":8 "device":1}'],
        ["rate_limit_resource[3]", '{"name":"R2", "count":3 "device":-1}'],
    ]


def test_a_name_given_twice_for_a_device_keeps_the_smaller_count_and_names_keep_their_case(
    tmp_path: Path,
) -> None:
    settings = _settings(
        tmp_path, "--rate-limit-resource=R:4", "--rate-limit-resource=R:2", "--rate-limit-resource=R:3",
        "--rate-limit-resource=r:9",
    )  # fmt: skip
    assert settings.rate_limit_resources == (RateLimitResource("R", 2), RateLimitResource("r", 9))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rate-limit=on"], "invalid argument for --rate-limit"),
        (["--rate-limit=exec_count"], "invalid argument for --rate-limit"),
        (["--rate-limit-resource=R"],
         "--rate-limit-resource option format is '<resource_name>:<count>:<device>' or "
         "'<resource_name>:<count>'. Got R"),
        (["--rate-limit-resource=R:1:0:2"],
         "--rate-limit-resource option format is '<resource_name>:<count>:<device>' or "
         "'<resource_name>:<count>'. Got R:1:0:2"),
        (["--rate-limit-resource=R:x"], "Invalid option value. Got x"),
        (["--rate-limit-resource=R:1:gpu0"], "Invalid option value. Got gpu0"),
        (["--rate-limit-resource=R:"], "Invalid option value. Got "),
        (["--rate-limit-resource=R:99999999999"], "Provided option value is out of bound. Got 99999999999"),
        # where tritonserver reads "2x" as 2 and a negative count as unlimited, modelport refuses
        (["--rate-limit-resource=R:2x"], "Invalid option value. Got 2x"),
        (["--rate-limit-resource=R:-1"], "--rate-limit-resource R:-1: the count must be 0 or more"),
        (["--rate-limit-resource=R:1:-2"],
         "--rate-limit-resource R:1:-2: the device must be a device id, or -1 for all"),
    ],
)  # fmt: skip
def test_bad_values_are_refused_with_tritons_messages(tmp_path: Path, args: list[str], message: str) -> None:
    with pytest.raises(SystemExit) as exited:
        _settings(tmp_path, *args)
    assert str(exited.value.code) == message
