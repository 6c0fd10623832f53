"""Triton's response cache flags: `--cache-config <cache>,<setting>=<value>` (repeatable) and the
deprecated `--response-cache-byte-size <bytes>`, parsed into the size of the one local cache.

Format errors, the flag conflict, several caches and a missing size are refused with tritonserver's
messages; a setting the local cache does not have is a warning.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

_FORMAT = "--cache-config option format is '<cache name>,<setting>=<value>'. Got "


@dataclass(frozen=True, slots=True)
class CacheFlags:
    """The response cache the flags ask for, and what to warn about."""

    size: int | None = None  # bytes; None: no response cache
    warnings: tuple[str, ...] = field(default=())


def parse_cache_flags(entries: Sequence[str], byte_size: str | None = None) -> CacheFlags:
    """The cache from `--cache-config` entries and `--response-cache-byte-size`; ValueError with
    tritonserver's message when they are malformed or conflict."""
    if byte_size is not None and entries:
        raise ValueError(
            "Incompatible flags --response-cache-byte-size and --cache-config both provided. "
            "Please provide one or the other."
        )
    settings: dict[str, list[tuple[str, str]]] = {}
    warnings: list[str] = []
    if byte_size is not None:
        size = str(_int64(byte_size))
        settings["local"] = [("size", size)]
        warnings.append(
            "Warning: '--response-cache-byte-size' has been deprecated! This will default to the 'local' "
            "cache implementation with the provided byte size for its config. Please use "
            "'--cache-config' instead. The equivalent --cache-config CLI args would be: "
            f"'--cache-config=local,size={size}'"
        )
    for entry in entries:
        name, key, value = split_cache_option(entry)
        settings.setdefault(name, []).append((key, value))
    if not settings:
        return CacheFlags(None, tuple(warnings))
    if len(settings) > 1:
        raise ValueError(
            "found multiple cache configurations, but only a single cache is currently supported"
        )
    name, pairs = next(iter(settings.items()))
    if name != "local":
        raise ValueError(
            f"--cache-config: unknown cache '{name}'; modelport has the 'local' cache only "
            "(--cache-config local,size=<bytes>)"
        )
    return CacheFlags(_local_size(pairs, warnings), tuple(warnings))


def split_cache_option(entry: str) -> tuple[str, str, str]:
    """`<cache>,<setting>=<value>` into its three parts, as tritonserver splits it."""
    comma = entry.find(",")
    if comma <= 0:
        raise ValueError(
            "No cache specified. --cache-config option format is <cache name>,<setting>=<value>. "
            f"Got {entry}"
        )
    equals = entry.find("=", comma + 1)
    if equals < 0:
        raise ValueError(_FORMAT + entry)
    key, value = entry[comma + 1 : equals], entry[equals + 1 :]
    if not key or not value:
        raise ValueError(_FORMAT + entry)
    return entry[:comma], key, value


def _local_size(pairs: list[tuple[str, str]], warnings: list[str]) -> int:
    size: str | None = None
    for key, value in pairs:
        if key == "size":
            size = value
        else:
            warnings.append(
                f"warning: --cache-config local,{key}={value}: the local cache has no setting '{key}'; "
                "ignored"
            )
    if size is None:
        raise ValueError("Failed to initialize LocalCache: config didn't contain a valid 'size' field.")
    text = size.strip()
    if not text.isdigit() or int(text) < 1:
        raise ValueError(
            f"Failed to initialize LocalCache: 'size' must be a positive number of bytes, got '{size}'"
        )
    return int(text)


def _int64(text: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise ValueError(f"Invalid option value. Got {text}") from None
    if not -(2**63) <= value < 2**63:
        raise ValueError(f"Provided option value is out of bound. Got {text}")
    return value
