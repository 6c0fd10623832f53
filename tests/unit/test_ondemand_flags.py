"""--model-memory-budget, --load-on-demand and --model-memory-accounting parsing (cli/ondemand_flags.py)."""

from __future__ import annotations

import pytest

from modelport.cli.main import build_parser, settings_from_args
from modelport.cli.ondemand_flags import check_memory_accounting, parse_memory_budget
from modelport.repository.process_memory import readable


@pytest.mark.parametrize(
    ("text", "expected"),
    [("500000000", 500_000_000), ("2GiB", 2 * 1024**3), ("512MB", 512_000_000), ("1.5G", 1_500_000_000),
     ("64kib", 64 * 1024), ("25%", 250), ("100%", 1000)],
)  # fmt: skip
def test_budget_sizes(text: str, expected: int) -> None:
    assert parse_memory_budget(text, physical_bytes=1000) == expected


@pytest.mark.parametrize("text", ["", "lots", "2XB", "-5", "0", "0%", "101%", "x%"])
def test_bad_budgets_name_the_flag(text: str) -> None:
    with pytest.raises(ValueError, match="--model-memory-budget"):
        parse_memory_budget(text, physical_bytes=1000)


def test_on_demand_flags_need_explicit_mode(tmp_path: object) -> None:
    parser = build_parser()
    for flag in ("--load-on-demand", "--model-memory-budget=1GiB"):
        args = parser.parse_args(["serve", "--model-repository", str(tmp_path), flag])
        with pytest.raises(SystemExit, match="requires setting '--model-control-mode=explicit'"):
            settings_from_args(args)
    args = parser.parse_args(["serve", "--model-repository", str(tmp_path), "--model-control-mode=explicit",
                              "--load-on-demand", "--model-memory-budget=2GiB"])  # fmt: skip
    settings = settings_from_args(args)
    assert settings.load_on_demand and settings.model_memory_budget == 2 * 1024**3
    assert settings.model_memory_accounting == "files", "the folder-size accounting stays the default"


def test_process_accounting_needs_a_budget_and_a_readable_rss(tmp_path: object) -> None:
    parser = build_parser()
    base = ["serve", "--model-repository", str(tmp_path), "--model-control-mode=explicit"]
    args = parser.parse_args([*base, "--model-memory-accounting=process"])
    with pytest.raises(SystemExit, match="process' requires '--model-memory-budget' as well"):
        settings_from_args(args)
    with pytest.raises(ValueError, match="/proc/self/statm, which this platform does not provide"):
        check_memory_accounting("process", 1000, rss_readable=False)
    check_memory_accounting("files", None, rss_readable=False)  # the default mode needs neither
    with pytest.raises(SystemExit):
        parser.parse_args([*base, "--model-memory-accounting=heap"])
    if readable():
        args = parser.parse_args([*base, "--model-memory-accounting=process", "--model-memory-budget=1GiB"])
        assert settings_from_args(args).model_memory_accounting == "process"
