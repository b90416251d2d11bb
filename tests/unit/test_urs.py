"""The user requirements specification (validation/urs.yaml) is well formed, and the protocols in features/ trace to
it: every scenario names at least one requirement, and only requirements that exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from pytest_bdd.parser import FeatureParser

from validation.bdd import load_urs

ROOT = Path(__file__).resolve().parents[2]
FEATURES = ROOT / "features"
AREAS = {"access", "audit", "signatures", "records", "documents", "training", "read_and_sign", "quality_events",
         "validation", "platform"}
RISKS = {"high", "medium", "low"}
FIELDS = ("id", "title", "text", "area", "reference", "risk")
URS_TAG = re.compile(r"^URS-\d{3}$")
# requirements verified by something other than the scenarios of features/, and by what
VERIFIED_ELSEWHERE: dict[str, str] = {}  # requirement id -> where it is verified, when not by a scenario


def scenarios() -> list[tuple[str, str, set[str]]]:
    """(feature file, scenario name, tags) for every scenario under features/."""
    found = []
    for path in sorted(FEATURES.rglob("*.feature")):
        feature = FeatureParser(str(path.parent), path.name).parse()
        for name, scenario in feature.scenarios.items():
            found.append((str(path.relative_to(ROOT)), name, set(scenario.tags)))
    return found


def test_the_document_names_itself_and_lists_requirements():
    document = yaml.safe_load((ROOT / "validation" / "urs.yaml").read_text(encoding="utf-8"))
    assert document["document"] == "URS-ATTEST"
    assert document["title"] == "Attest user requirements specification"
    assert len(document["requirements"]) >= 40


def test_ids_are_unique_and_sequential():
    ids = [r["id"] for r in load_urs()]
    assert ids == [f"URS-{n:03d}" for n in range(1, len(ids) + 1)]


@pytest.mark.parametrize("requirement", load_urs(), ids=lambda r: r.get("id", "?"))
def test_each_requirement_has_every_field_with_an_allowed_value(requirement):
    assert tuple(requirement) == FIELDS
    for name in ("id", "title", "text", "area", "risk"):
        assert isinstance(requirement[name], str) and requirement[name].strip(), f"{name} is empty"
    assert isinstance(requirement["reference"], str)  # "" for a business function
    assert requirement["area"] in AREAS
    assert requirement["risk"] in RISKS
    assert len(requirement["title"]) <= 60
    assert requirement["text"].endswith(".")


def test_load_urs_returns_a_fresh_list_each_time():
    first = load_urs()
    first[0]["title"] = "changed"
    assert load_urs()[0]["title"] != "changed"


def test_every_scenario_names_at_least_one_requirement_that_exists():
    known = {r["id"] for r in load_urs()}
    found = scenarios()
    assert found, "no scenarios found under features/"
    untagged = [f"{path}: {name}" for path, name, tags in found if not any(URS_TAG.match(t) for t in tags)]
    unknown = [f"{path}: {name}: {sorted(t for t in tags if t.startswith('URS') and t not in known)}"
               for path, name, tags in found if any(t.startswith("URS") and t not in known for t in tags)]
    assert untagged == [], f"scenarios without a URS tag: {untagged}"
    assert unknown == [], f"scenarios naming requirements that do not exist: {unknown}"


def test_every_requirement_is_verified_by_a_scenario_or_says_by_what():
    covered = {tag for _path, _name, tags in scenarios() for tag in tags}
    uncovered = [r["id"] for r in load_urs() if r["id"] not in covered and r["id"] not in VERIFIED_ELSEWHERE]
    assert uncovered == [], f"requirements with no scenario: {uncovered}"
