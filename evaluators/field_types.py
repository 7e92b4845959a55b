"""Field types, each defined once: the JSON Schema of its values, what a gold value must be, and how a value is
normalised for scoring. Everything that checks or compares a field reads it from here:

- the task data's gold records are validated with `jsonschema` against `record_schema` (`harness.task_data`);
- the scorer normalises with `normalize_value` and counts `schema_valid_rate` with `is_schema_valid`;
- the answer's JSON Schema for constrained decoding is `record_schema` (`harness.prompts.output_schema`).

A date is ISO `YYYY-MM-DD` and a real day: the pattern is what constrained decoders enforce, `format: date` what
validation adds (2025-13-45 matches the pattern and is refused).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import jsonschema

from evaluators.normalization import Vocabulary, normalize_enum, normalize_string, parse_date, parse_number

ISO_DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"


class FieldLike(Protocol):
    """What a field type needs to know about a field: its type and, for enums, its values."""

    @property
    def type(self) -> str: ...

    @property
    def values(self) -> tuple[str, ...] | None: ...


@dataclass(frozen=True)
class FieldType:
    name: str
    expected: str  # what a value must be, as an error says it
    schema: Callable[[tuple[str, ...]], dict[str, Any]]  # JSON Schema of a present value, given the enum values
    # The canonical form for scoring, given the enum values and the task's words; None when unreadable.
    normalize: Callable[[Any, tuple[str, ...], Vocabulary], Any]


def _normalize_string_list(value: Any, values: tuple[str, ...], vocabulary: Vocabulary) -> frozenset[str]:
    """A set of normalised strings (order and duplicates do not matter); a lone string counts as one item."""
    items = value if isinstance(value, list) else [value]
    normalized = {normalize_string(item, vocabulary) for item in items}
    return frozenset(item for item in normalized if item is not None)


FIELD_TYPES = {
    "string": FieldType(
        "string",
        "a string",
        lambda values: {"type": "string"},
        lambda value, values, vocabulary: normalize_string(value, vocabulary),
    ),
    "number": FieldType(
        "number",
        "a number",
        lambda values: {"type": "number"},
        lambda value, values, vocabulary: parse_number(value, vocabulary),
    ),
    "enum": FieldType(
        "enum",
        "one of the declared values",
        lambda values: {"type": "string", "enum": list(values)},
        lambda value, values, vocabulary: normalize_enum(value, values, vocabulary),
    ),
    "date": FieldType(
        "date",
        "an ISO date YYYY-MM-DD",
        lambda values: {"type": "string", "pattern": ISO_DATE_PATTERN, "format": "date"},
        lambda value, values, vocabulary: parse_date(value),
    ),
    "string_list": FieldType(
        "string_list",
        "a list of strings",
        lambda values: {"type": "array", "items": {"type": "string"}},
        _normalize_string_list,
    ),
}


def field_type(field: FieldLike) -> FieldType:
    try:
        return FIELD_TYPES[field.type]
    except KeyError:
        raise ValueError(f"unknown field type {field.type!r}; expected one of {', '.join(FIELD_TYPES)}") from None


def value_schema(field: FieldLike) -> dict[str, Any]:
    """The JSON Schema of one field's value: its type's, or null (the document does not say it)."""
    return {"anyOf": [field_type(field).schema(field.values or ()), {"type": "null"}]}


def record_schema(fields: Mapping[str, FieldLike]) -> dict[str, Any]:
    """The JSON Schema of an answer (and of a gold record's `fields`): every field, no other key."""
    properties = {name: value_schema(spec) for name, spec in fields.items()}
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


def normalize_value(field: FieldLike, value: Any, vocabulary: Vocabulary) -> Any:
    """The canonical form of a value of this field, in the task's words; a frozenset for string lists; None if
    absent or unreadable."""
    return None if value is None else field_type(field).normalize(value, field.values or (), vocabulary)


def is_schema_valid(field: FieldLike, value: Any) -> bool:
    """Whether a value validates against the field's JSON Schema as written (null means 'not found').

    Stricter than scoring: `"1 250 000 rubles"` scores as a number but is not a JSON number."""
    return _validator(field.type, field.values).is_valid(value)


def value_problem(field: FieldLike, value: Any) -> str | None:
    """Why a gold value does not fit its field's schema, or None when it does (null always fits)."""
    if is_schema_valid(field, value):
        return None
    if field.type == "enum":
        return f"not a declared value; expected one of {', '.join(field.values or ())}"
    return f"expected {field_type(field).expected}"


def record_validator(fields: Mapping[str, FieldLike]) -> jsonschema.protocols.Validator:
    """A validator of `record_schema(fields)`, dates checked to be real days (made once per set of fields)."""
    return _record_validator(tuple((name, spec.type, spec.values) for name, spec in fields.items()))


@functools.lru_cache(maxsize=64)
def _record_validator(fields: tuple[tuple[str, str, tuple[str, ...] | None], ...]) -> jsonschema.protocols.Validator:
    return _validator_of(record_schema({name: _Field(type_name, values) for name, type_name, values in fields}))


@functools.lru_cache(maxsize=256)
def _validator(type_name: str, values: tuple[str, ...] | None) -> jsonschema.protocols.Validator:
    return _validator_of(value_schema(_Field(type_name, values)))


def _validator_of(schema: dict[str, Any]) -> jsonschema.protocols.Validator:
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


@dataclass(frozen=True)
class _Field:
    type: str
    values: tuple[str, ...] | None
