"""URL converters."""

from __future__ import annotations

from werkzeug.routing import IntegerConverter

MAX_ID = 2**31 - 1  # the largest id every supported database stores in an integer column


class BoundedInt(IntegerConverter):
    """`<int:...>` limited to what every supported database stores in an integer id (a larger number is a 404,
    not a database overflow error)."""

    def __init__(self, url_map, *args, **kwargs):
        kwargs.setdefault("max", MAX_ID)
        super().__init__(url_map, *args, **kwargs)


def record_id(value: str) -> int:
    """An id from a query string, for `request.args.get(name, type=record_id)`: a number no id column holds is a
    ValueError (so the argument counts as absent) instead of a database overflow error."""
    number = int(value)
    if abs(number) > MAX_ID:
        raise ValueError(f"{value} is not a record id")
    return number
