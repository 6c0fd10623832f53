"""`MODELPORT_<FLAG>` environment variables as defaults for `modelport serve` flags.

Every flag of `serve` (its first long name, upper-cased, dashes to underscores: `--http-port` ->
`MODELPORT_HTTP_PORT`) may come from the environment; a flag on the command line wins over its variable.
A repeatable flag takes several values from one variable, separated by ';' (the values themselves use
',', ':' and '=' in Triton's formats), and the command line replaces them rather than adding to them.
A value the flag would refuse is an error naming the variable.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

PREFIX = "MODELPORT_"
SEPARATOR = ";"
EPILOG = (
    f"Each flag whose help names a variable ({PREFIX}<FLAG>: upper case, dashes to underscores, e.g. "
    f"--http-port -> {PREFIX}HTTP_PORT) may be set by that environment variable instead; a flag on the "
    f"command line wins. A repeatable flag takes several values from its variable, separated by "
    f"'{SEPARATOR}'. Booleans take true/false, 1/0, yes/no, on/off. The tritonserver flags modelport "
    "ignores have no variable."
)


class HelpFormatter(argparse.HelpFormatter):
    """argparse's help layout, but a long variable name stays whole on its line, so it can be copied."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        import textwrap

        return textwrap.wrap(" ".join(text.split()), width, break_long_words=False, break_on_hyphens=False)


def env_name(action: argparse.Action) -> str:
    """The variable for a flag, from its first long option: --http-port -> MODELPORT_HTTP_PORT."""
    long_names = [name for name in action.option_strings if name.startswith("--")]
    return PREFIX + long_names[0][2:].upper().replace("-", "_")


def _configurable(parser: argparse.ArgumentParser, skip_dest: str) -> Iterator[argparse.Action]:
    """The parser's flags that a variable may set (not --help, not the accepted-and-ignored ones)."""
    for action in parser._actions:
        if action.option_strings and action.dest not in (argparse.SUPPRESS, "help", skip_dest):
            yield action


def _repeatable(action: argparse.Action) -> bool:
    return isinstance(action, argparse._AppendAction)


def describe_environment(parser: argparse.ArgumentParser, skip_dest: str) -> None:
    """Name each flag's variable in its help text and explain the rules in the epilog."""
    for action in _configurable(parser, skip_dest):
        note = f"env {env_name(action)}" + (f", '{SEPARATOR}'-separated" if _repeatable(action) else "")
        action.help = f"{action.help} [{note}]" if action.help else f"[{note}]"
    parser.epilog = EPILOG


@dataclass
class EnvironmentDefaults:
    """The serve flags the environment set; `finish` completes a parsed namespace with them."""

    sources: dict[str, str] = field(default_factory=dict)  # option string -> variable, for error messages
    _lists: dict[str, tuple[list[Any], list[Any]]] = field(default_factory=dict)  # dest -> (marker, values)

    @classmethod
    def apply(
        cls, parser: argparse.ArgumentParser, environ: Mapping[str, str], skip_dest: str
    ) -> EnvironmentDefaults:
        """Make each variable present in `environ` the default of its flag in `parser`.

        A value the flag refuses exits with status 2 and an error naming the variable.
        """
        found = cls()
        for action in _configurable(parser, skip_dest):
            name = env_name(action)
            if name not in environ:
                continue
            raw = environ[name]
            try:
                if _repeatable(action):
                    items = [item for item in raw.split(SEPARATOR) if item]
                    values = [_convert(action, item) for item in items]
                    # argparse copies a list default before appending to it, so a command-line use never
                    # leaves this very object in place: finish() knows the command line gave none.
                    marker: list[Any] = []
                    action.default = marker
                    found._lists[action.dest] = (marker, values)
                else:
                    action.default = _convert(action, raw)
            except (argparse.ArgumentTypeError, TypeError, ValueError) as exc:
                # no usage dump: the command line is not what is wrong
                parser.exit(2, f"{parser.prog}: error: environment variable {name}: {exc}\n")
            action.required = False
            found.sources.update({option: name for option in action.option_strings})
        return found

    def finish(self, args: argparse.Namespace) -> argparse.Namespace:
        """Put the environment's values in for each repeatable flag the command line did not give."""
        for dest, (marker, values) in self._lists.items():
            if getattr(args, dest, None) is marker:
                setattr(args, dest, values)
        return args

    def explain(self, message: str) -> str:
        """`message` (an error about a flag) with the variables it came from, when it came from one."""
        named = sorted({var for option, var in self.sources.items() if option in message})
        return f"{message} (set by environment variable {', '.join(named)})" if named else message


def _convert(action: argparse.Action, raw: str) -> Any:
    """`raw` as the flag's own type would take it from the command line."""
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        from modelport.cli.main import parse_bool  # main imports this module: late, no cycle at import

        flag = parse_bool(raw)
        return flag if isinstance(action, argparse._StoreTrueAction) else not flag
    converter = action.type
    if converter is None:
        value: Any = raw
    elif callable(converter):
        try:
            value = converter(raw)
        except (TypeError, ValueError):  # int(), float(), Path(): argparse's own wording
            name = getattr(converter, "__name__", repr(converter))
            raise argparse.ArgumentTypeError(f"invalid {name} value") from None
    else:
        raise TypeError(f"unsupported flag type {converter!r}")
    if action.choices is not None and value not in action.choices:
        choices = ", ".join(map(str, action.choices))
        raise argparse.ArgumentTypeError(f"invalid choice (choose from {choices})")
    return value
