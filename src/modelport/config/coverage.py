"""Nothing in a model's config is silently ignored: every field set is checked against the coverage table.

`review` walks the fields set in a completed ModelConfig (protobuf ListFields, through repeated,
map and nested messages) once per load: fields modelport implements pass silently; others give one
warning each, naming the model and the field path, or a refusal that makes the model UNAVAILABLE.
`render_markdown` writes the README's table from the same coverage table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from modelport.config.coverage_table import TABLE, Coverage, Level

_UNKNOWN = Coverage(Level.IGNORED, "not known to this modelport version")


@dataclass(frozen=True, slots=True)
class Review:
    """What a model's config asks for that modelport does not do, as log lines and refusal reasons."""

    warnings: tuple[str, ...] = ()
    refusals: tuple[str, ...] = ()


@dataclass(slots=True)
class _Finding:
    coverage: Coverage
    names: dict[str, None] = field(default_factory=dict)  # ordered set of entry names


def review(config: Message, model: str, table: Mapping[str, Coverage] = TABLE) -> Review:
    """One warning or refusal per field path that is set and not (wholly) supported, in proto order."""
    findings: dict[str, _Finding] = {}
    _walk(config, "", table, findings)
    warnings: list[str] = []
    refusals: list[str] = []
    for path, found in findings.items():
        shown = f"'{path}'{_names_suffix(found)}"
        level = found.coverage.level
        if level is Level.REFUSED:
            refusals.append(f"config field {shown} is not supported by modelport: {found.coverage.note}")
        elif level is Level.PARTLY:
            warnings.append(
                f"model '{model}': config field {shown} is only partly supported by modelport: "
                f"{found.coverage.note}"
            )
        else:
            warnings.append(
                f"model '{model}': config field {shown} is not supported by modelport and is ignored"
            )
    return Review(tuple(warnings), tuple(refusals))


def _walk(message: Message, prefix: str, table: Mapping[str, Coverage], found: dict[str, _Finding]) -> None:
    for descriptor, value in message.ListFields():
        path = prefix + descriptor.name
        coverage = table.get(path, _UNKNOWN)
        if coverage.level is not Level.SUPPORTED:
            finding = found.setdefault(path, _Finding(coverage))
            if coverage.named_by:
                finding.names.update(dict.fromkeys(_names(value, coverage.named_by)))
            continue
        for child in _messages(descriptor, value):
            _walk(child, path + ".", table, found)


def _messages(descriptor: FieldDescriptor, value: Any) -> Iterable[Message]:
    """The messages a set field holds: itself, a repeated field's items, or a map's message values."""
    if descriptor.message_type is None:
        return ()
    if descriptor.message_type.GetOptions().map_entry:
        values = list(value.values())
        return values if values and isinstance(values[0], Message) else ()
    return [value] if isinstance(value, Message) else list(value)


def _names(value: Any, named_by: str) -> list[str]:
    """The values of the dotted field `named_by` in a message or in each item of a repeated field."""
    head, _, rest = named_by.partition(".")
    names: list[str] = []
    for item in [value] if isinstance(value, Message) else list(value):
        part = getattr(item, head)
        if rest:
            names += _names(part, rest)
        elif isinstance(part, str):
            names.append(part)
        else:
            names += [str(v) for v in part]
    return [name for name in names if name]


def _names_suffix(found: _Finding) -> str:
    if not found.names:
        return ""
    label = found.coverage.name_label
    return f" ({label} {', '.join(repr(name) for name in found.names)})"


# --- the README table ------------------------------------------------------------------------------
_LEVEL_TEXT = {
    Level.SUPPORTED: "supported",
    Level.PARTLY: "partly (warning at load)",
    Level.IGNORED: "ignored (warning at load)",
    Level.REFUSED: "refused (model UNAVAILABLE)",
}


def render_markdown(table: Mapping[str, Coverage] = TABLE) -> str:
    """The README table: wholly supported blocks in one row each, everything else row by row."""
    lines = ["| config field | modelport | notes |", "|---|---|---|"]
    rows: list[tuple[list[str], Coverage, str]] = []
    _rows("", table, rows)
    for paths, coverage, extra in rows:
        shown = ", ".join(f"`{path}`" for path in paths)
        note = "; ".join(filter(None, [extra, coverage.note]))
        lines.append(f"| {shown} | {_LEVEL_TEXT[coverage.level]} | {note} |")
    return "\n".join(lines) + "\n"


def _children(parent: str, table: Mapping[str, Coverage]) -> list[str]:
    prefix = f"{parent}." if parent else ""
    return [p for p in table if p.startswith(prefix) and "." not in p[len(prefix) :]]


def _wholly_supported(path: str, table: Mapping[str, Coverage]) -> bool:
    return all(c.level is Level.SUPPORTED for p, c in table.items() if p == path or p.startswith(path + "."))


def _rows(parent: str, table: Mapping[str, Coverage], rows: list[tuple[list[str], Coverage, str]]) -> None:
    """A row per block: a supported block lists its wholly supported fields (and their notes); the
    rest get rows of their own, siblings alike sharing one."""
    for path in _children(parent, table):
        coverage = table[path]
        if coverage.level is not Level.SUPPORTED:
            last = rows[-1] if rows else None
            if last is not None and last[1] == coverage and last[0][-1].rpartition(".")[0] == parent:
                last[0].append(path)
            else:
                rows.append(([path], coverage, ""))
            continue
        if parent and _wholly_supported(path, table):
            continue  # listed in its parent's row
        supported = [p for p in _children(path, table) if _wholly_supported(p, table)]
        if supported or not parent:
            rows.append(([path], coverage, _fields_text(path, supported, table)))
        if not _wholly_supported(path, table):
            _rows(path, table, rows)


def _fields_text(path: str, fields: list[str], table: Mapping[str, Coverage]) -> str:
    if not fields:
        return ""
    names = ", ".join(f"`{p.rpartition('.')[2]}`" for p in fields)
    notes = [
        f"`{p[len(path) + 1:]}`: {c.note}"
        for p, c in table.items()
        if c.note and any(p == f or p.startswith(f + ".") for f in fields)
    ]
    return "; ".join([f"fields {names}", *notes])
