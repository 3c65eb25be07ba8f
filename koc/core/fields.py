"""Input field types every API schema builds on, bounded like the columns the values land in.

A value the database cannot hold (an integer past its column, a lone surrogate, a NUL, a date
that overflows on the way to UTC) is refused here as a 422 naming the field, instead of
reaching the driver and coming back as a 500. The bounds are validators apispec understands,
so the served OpenAPI document states them (minimum/maximum, maxLength, maxItems, enum) and a
generator reading it produces mostly valid data.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from marshmallow import ValidationError, fields, validate
from werkzeug.routing import BaseConverter, IntegerConverter

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
# Far enough either side for any real date, near enough that arithmetic on it (a window of
# days, a conversion to UTC) cannot overflow Python's datetime or the columns.
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(3000, 1, 1, tzinfo=UTC)

# C0 and C1 control characters, DEL, and UTF-16 surrogate halves (JSON can spell a lone one,
# "\ud800", which no UTF-8 column can store).
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_UNPRINTABLE_MULTILINE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def _as_list(validators: Any) -> list[Any]:
    if validators is None:
        return []
    if callable(validators):
        return [validators]
    return list(validators)


class Integer(fields.Integer):
    """A whole number within [minimum, maximum] (by default a 32-bit column's non-negative range).

    In a JSON body only a JSON integer is accepted (1.0, true and "1" are refused); in a query
    string (strict=False) the text must be an integer's digits, not "1.5".
    """

    def __init__(self, *, minimum: int = 0, maximum: int = INT32_MAX, strict: bool = True,
                 **kwargs: Any) -> None:
        validators = [validate.Range(min=minimum, max=maximum), *_as_list(kwargs.pop(
            "validate", None))]
        super().__init__(strict=strict, validate=validators, **kwargs)

    def _validated(self, value: Any) -> int:
        if isinstance(value, float):
            raise self.make_error("invalid", input=value)
        return super()._validated(value)


def BigInteger(*, minimum: int = 0, maximum: int = INT64_MAX, **kwargs: Any) -> Integer:
    """A whole number for a BigInteger column: up to 2^63 - 1."""
    return Integer(minimum=minimum, maximum=maximum, **kwargs)


def Id(**kwargs: Any) -> Integer:
    """A row id (BigInteger primary keys start at 1)."""
    return Integer(minimum=1, maximum=INT64_MAX, **kwargs)


class Float(fields.Float):
    """A finite number within [minimum, maximum]; never NaN or infinity."""

    def __init__(self, *, minimum: float = 0, maximum: float = 1e9, **kwargs: Any) -> None:
        validators = [validate.Range(min=minimum, max=maximum), *_as_list(kwargs.pop(
            "validate", None))]
        super().__init__(allow_nan=False, validate=validators, **kwargs)


def printable(*, multiline: bool = False) -> validate.Validator:
    """Refuse control characters and lone surrogates (newlines and tabs too, unless multiline)."""
    pattern = _UNPRINTABLE_MULTILINE if multiline else _UNPRINTABLE

    class _Printable(validate.Validator):
        error = ("must not contain control characters" +
                 ("" if not multiline else " other than newlines and tabs") +
                 " or unpaired surrogates")

        def __call__(self, value: str) -> str:
            if pattern.search(value):
                raise ValidationError(self.error)
            return value

    return _Printable()


class String(fields.String):
    """Text of at most max_length characters (the column's length), printable."""

    def __init__(self, *, max_length: int, min_length: int = 0, multiline: bool = False,
                 **kwargs: Any) -> None:
        validators = [validate.Length(min=min_length, max=max_length),
                      printable(multiline=multiline), *_as_list(kwargs.pop("validate", None))]
        super().__init__(validate=validators, **kwargs)


def OneOf(choices: Any, **kwargs: Any) -> fields.String:
    """One of a closed set of words: documented as an enum, anything else is a 422."""
    return fields.String(validate=validate.OneOf(list(choices)), **kwargs)


class DateTime(fields.AwareDateTime):
    """An ISO 8601 date-time with an offset, between 1900 and 3000."""

    default_error_messages = {  # noqa: RUF012 - marshmallow merges this class attribute
        "out_of_range": "must be between 1900-01-01 and 3000-01-01",
    }

    def __init__(self, **kwargs: Any) -> None:
        metadata = {"description": "ISO 8601 with an offset, between 1900 and 3000",
                    **kwargs.pop("metadata", {})}
        super().__init__(metadata=metadata, **kwargs)

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> datetime:
        moment = super()._deserialize(value, attr, data, **kwargs)
        try:
            in_utc = moment.astimezone(UTC)
        except OverflowError as exc:
            raise self.make_error("out_of_range") from exc
        if not EARLIEST <= in_utc < LATEST:
            raise self.make_error("out_of_range")
        return moment


def _no_repeats(items: list[Any]) -> None:
    if len(set(items)) != len(items):
        raise ValidationError("must not repeat an item")


class List(fields.List):
    """A list of at most max_items items (so no request makes unbounded work).

    unique=True refuses repeats. It is a field validator rather than a schema's @validates,
    which marshmallow also runs on a list with invalid items and whose error it then files
    under "_schema" beside the items' integer indexes: keys no JSON encoder can sort.
    """

    def __init__(self, item: fields.Field, *, max_items: int, min_items: int = 0,
                 unique: bool = False, **kwargs: Any) -> None:
        validators = [validate.Length(min=min_items, max=max_items),
                      *([_no_repeats] if unique else []),
                      *_as_list(kwargs.pop("validate", None))]
        if unique:
            kwargs["metadata"] = {"uniqueItems": True, **kwargs.get("metadata", {})}
        super().__init__(item, validate=validators, **kwargs)


class IdConverter(IntegerConverter):
    """`<id:name>` in a route: a row id. Digits past 2^63 - 1 (or 0) cannot name a row: 404."""

    # At most 19 digits in the pattern itself: a path whose number fails only in to_python
    # can still match a sibling rule's pattern and come back 405 instead of 404.
    regex = r"\d{1,19}"

    def __init__(self, url_map: Any) -> None:
        super().__init__(url_map, min=1, max=INT64_MAX)


def id_parameter_schema(_converter: IdConverter) -> dict[str, Any]:
    return {"type": "integer", "format": "int64", "minimum": 1, "maximum": INT64_MAX}


class KeyConverter(BaseConverter):
    """`<key:name>` in a route: an external id, invitation code or badge id (1-64 of A-Z a-z 0-9
    _ . : -). Anything else cannot name a row: 404."""

    regex = r"[A-Za-z0-9_.:\-]{1,64}"


def key_parameter_schema(_converter: KeyConverter) -> dict[str, Any]:
    return {"type": "string", "pattern": r"^[A-Za-z0-9_.:\-]{1,64}$", "minLength": 1,
            "maxLength": 64}
