"""URL converters."""

from __future__ import annotations

from werkzeug.routing import IntegerConverter


class BoundedInt(IntegerConverter):
    """`<int:...>` limited to what every supported database stores in an integer id (a larger number is a 404,
    not a database overflow error)."""

    def __init__(self, url_map, *args, **kwargs):
        kwargs.setdefault("max", 2**31 - 1)
        super().__init__(url_map, *args, **kwargs)
