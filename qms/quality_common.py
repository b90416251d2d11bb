"""What change controls, deviations and CAPAs share: signable records with a number, a status and a row version."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.orm import Mapped


class QualityRecord:
    """Mixin for the three quality event records: a signature binds the record's canonical content (its number,
    status and the fields listed in `signed_fields`) at the row version the signer saw."""

    signed_fields: tuple[str, ...] = ()
    status_labels: dict[str, str] = {}

    number: Mapped[str]
    status: Mapped[str]
    row_version: Mapped[int]

    @property
    def signable_version(self) -> str:
        return f"{self.status} v{self.row_version}"

    @property
    def concurrency_token(self) -> str:
        return str(self.row_version)

    @property
    def status_label(self) -> str:
        return self.status_labels.get(self.status, self.status)

    def signable_title(self) -> str:
        return self.audit_title()  # type: ignore[attr-defined]

    def canonical_content(self) -> bytes:
        data: dict[str, Any] = {"type": self.signable_type, "number": self.number,  # type: ignore[attr-defined]
                                "status": self.status}
        for name in self.signed_fields:
            value = getattr(self, name)
            data[name] = value.isoformat() if hasattr(value, "isoformat") else value
        return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
