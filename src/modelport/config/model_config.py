"""config.pbtxt <-> Triton's ModelConfig message, and the JSON form the /config endpoint shows."""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor, json_format, text_format
from google.protobuf.message import Message

from modelport.errors import InvalidInput
from modelport.protocol import ModelConfigProto

_INT64_TYPES = {
    descriptor.FieldDescriptor.TYPE_INT64,
    descriptor.FieldDescriptor.TYPE_UINT64,
    descriptor.FieldDescriptor.TYPE_SINT64,
    descriptor.FieldDescriptor.TYPE_FIXED64,
    descriptor.FieldDescriptor.TYPE_SFIXED64,
}


def parse_pbtxt(text: str, source: str) -> ModelConfigProto:
    """Parse protobuf text into a ModelConfig; `source` names the file in error messages."""
    config = ModelConfigProto()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as exc:
        raise InvalidInput(f"failed to parse model configuration '{source}': {exc}") from None
    return config


def parse_json(text: str | bytes, source: str) -> ModelConfigProto:
    """Parse a ModelConfig from its protobuf-JSON form (as sent in a repository load override)."""
    config = ModelConfigProto()
    try:
        json_format.Parse(text, config)
    except json_format.ParseError as exc:
        raise InvalidInput(f"failed to parse model configuration {source}: {exc}") from None
    return config


def to_json_dict(config: Message) -> dict[str, Any]:
    """The config as Triton prints it: proto field names, every default shown, int64 as numbers."""
    as_dict: dict[str, Any] = json_format.MessageToDict(
        config,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
    )
    _int64_to_numbers(config.DESCRIPTOR, as_dict)
    return as_dict


def _int64_to_numbers(desc: descriptor.Descriptor, value: dict[str, Any]) -> None:
    """json_format prints 64-bit integers as strings; Triton prints numbers."""
    for field in desc.fields:
        if field.name not in value:
            continue
        item = value[field.name]
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            for key, entry in item.items():
                if value_field.message_type is not None:
                    _int64_to_numbers(value_field.message_type, entry)
                elif value_field.type in _INT64_TYPES:
                    item[key] = int(entry)
        elif field.message_type is not None:
            entries = item if isinstance(item, list) else [item]
            for entry in entries:
                _int64_to_numbers(field.message_type, entry)
        elif field.type in _INT64_TYPES:
            value[field.name] = [int(v) for v in item] if isinstance(item, list) else int(item)
