"""Side-by-side comparison of two Markdown revisions, line by line."""

from __future__ import annotations

import difflib
from dataclasses import dataclass


@dataclass(frozen=True)
class DiffRow:
    kind: str  # "same", "changed", "removed", "added"
    left_no: int | None
    left: str
    right_no: int | None
    right: str


def side_by_side(old: str, new: str) -> list[DiffRow]:
    a, b = (old or "").splitlines(), (new or "").splitlines()
    rows: list[DiffRow] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if tag == "equal":
            rows.extend(DiffRow("same", i + 1, a[i], j + 1, b[j]) for i, j in zip(range(i1, i2), range(j1, j2),
                                                                                   strict=True))
        elif tag == "delete":
            rows.extend(DiffRow("removed", i + 1, a[i], None, "") for i in range(i1, i2))
        elif tag == "insert":
            rows.extend(DiffRow("added", None, "", j + 1, b[j]) for j in range(j1, j2))
        else:
            left, right = list(range(i1, i2)), list(range(j1, j2))
            for k in range(max(len(left), len(right))):
                i = left[k] if k < len(left) else None
                j = right[k] if k < len(right) else None
                rows.append(DiffRow("changed", i + 1 if i is not None else None, a[i] if i is not None else "",
                                    j + 1 if j is not None else None, b[j] if j is not None else ""))
    return rows


def summary(rows: list[DiffRow]) -> dict[str, int]:
    counts = {"changed": 0, "removed": 0, "added": 0}
    for row in rows:
        if row.kind in counts:
            counts[row.kind] += 1
    return counts
