"""pytest plugin for the validation protocols in features/: the `evidence` fixture a step uses to state its actual
result and the records it touched.

The protocol runner (validation/capture.py) reads what a step reported right after the step ran; in `make test` the
same fixture simply collects and nothing reads it.

It also registers every requirement id of the user requirements specification (validation/urs.yaml) as a pytest
marker: pytest-bdd turns the scenario tag `@URS-012` into the marker `URS-012`, and the suite runs with
`--strict-markers`, so a tag naming no requirement fails collection instead of silently dropping coverage.
"""

from __future__ import annotations

import importlib.resources
from typing import Any

import pytest

PROTOCOL_MARKERS = {
    "iq": "installation qualification protocol (features/iq)",
    "oq": "operational qualification protocol (features/oq)",
    "pq": "performance qualification protocol (features/pq)",
}


def load_urs() -> list[dict[str, Any]]:
    """The requirements of validation/urs.yaml in document order: dicts with id, title, text, area, reference and
    risk. A new list on each call, so callers may change it freely."""
    import yaml

    text = importlib.resources.files("validation").joinpath("urs.yaml").read_text(encoding="utf-8")
    document = yaml.safe_load(text)
    return [dict(requirement) for requirement in document["requirements"]]


def pytest_configure(config: pytest.Config) -> None:
    for name, help_text in PROTOCOL_MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {help_text}")
    for requirement in load_urs():
        config.addinivalue_line("markers", f"{requirement['id']}: {requirement['title']}")


class Evidence:
    """What one step observed. A step calls `actual("...")` with the result an inspector compares to the expected
    one, and `record("Revision", "SOP-QA-001 rev 2.0")` for each record or value it created or checked."""

    def __init__(self) -> None:
        self._actual: list[str] = []
        self._records: list[tuple[str, str]] = []

    def actual(self, text: str) -> None:
        self._actual.append(str(text))

    def record(self, label: str, value: Any) -> None:
        self._records.append((str(label), str(value)))

    def take(self) -> dict[str, Any]:
        """The step's evidence, emptied for the next step."""
        out = {"actual": "; ".join(self._actual), "records": list(self._records)}
        self._actual.clear()
        self._records.clear()
        return out


@pytest.fixture
def evidence() -> Evidence:
    return Evidence()
