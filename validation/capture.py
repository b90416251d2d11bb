"""pytest plugin loaded by the protocol runner (`-p validation.capture --validation-out=FILE`): writes every scenario
and step of the pytest-bdd run as JSON lines, which the runner reads while the run goes on and stores in the database.

The step outcome comes from pytest-bdd's step hooks (passed, failed, undefined); the scenario's authoritative
outcome from pytest's own reports (a fixture that fails before the first step fails the scenario too). Times are the
wall clock, not the application clock: protocols freeze the application clock to test time-dependent behaviour.
"""

from __future__ import annotations

import json
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

_ERROR_LIMIT = 4000


def pytest_addoption(parser) -> None:
    parser.addoption("--validation-out", default=None, help="JSON lines file for the protocol runner")


def pytest_configure(config) -> None:
    path = config.getoption("--validation-out", default=None)
    if path:
        config.pluginmanager.register(_Capture(Path(path), config.rootpath), "validation-capture")


def _wall() -> str:
    return datetime.now(UTC).isoformat()


def _error_text(exception: BaseException) -> str:
    text = "".join(traceback.format_exception_only(type(exception), exception)).strip()
    tb = traceback.extract_tb(exception.__traceback__)
    where = [f"{Path(f.filename).name}:{f.lineno} in {f.name}" for f in tb[-3:]]
    if where:
        text = f"{text}\n  at " + " <- ".join(reversed(where))
    return text[:_ERROR_LIMIT]


class _Capture:
    def __init__(self, out: Path, root: Path) -> None:
        self.out = out.open("a", encoding="utf-8")
        self.root = root
        self.step_started: str | None = None
        self.reports: dict[str, list[Any]] = {}
        self.started: set[str] = set()

    def write(self, **event: Any) -> None:
        self.out.write(json.dumps(event, default=str) + "\n")
        self.out.flush()

    def _relative(self, filename: str) -> str:
        try:
            return Path(filename).resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:  # a protocol folder outside the project (tests)
            return Path(filename).resolve().as_posix()

    def _scenario_event(self, nodeid: str, scenario: Any, feature: Any) -> None:
        steps = [{"keyword": s.keyword.strip(), "type": s.type, "text": s.name} for s in scenario.steps]
        self.started.add(nodeid)
        self.write(event="scenario", nodeid=nodeid, feature_path=self._relative(feature.filename),
                   feature=feature.name, scenario=scenario.name, tags=sorted(scenario.tags | feature.tags),
                   steps=steps, start=_wall())

    @pytest.hookimpl
    def pytest_bdd_before_scenario(self, request, feature, scenario) -> None:
        self._scenario_event(request.node.nodeid, scenario, feature)

    @pytest.hookimpl
    def pytest_bdd_before_step(self, request, feature, scenario, step, step_func) -> None:
        self.step_started = _wall()

    def _evidence(self, request) -> dict[str, Any]:
        try:
            return request.getfixturevalue("evidence").take()
        except Exception:  # a protocol without the evidence fixture: the outcome alone is the evidence
            return {"actual": "", "records": []}

    @pytest.hookimpl
    def pytest_bdd_after_step(self, request, feature, scenario, step, step_func, step_func_args) -> None:
        evidence = self._evidence(request)
        self.write(event="step", nodeid=request.node.nodeid, index=scenario.steps.index(step), outcome="passed",
                   actual=evidence["actual"], records=evidence["records"], error=None,
                   start=self.step_started, end=_wall())

    @pytest.hookimpl
    def pytest_bdd_step_error(self, request, feature, scenario, step, step_func, step_func_args,
                              exception) -> None:
        evidence = self._evidence(request)
        self.write(event="step", nodeid=request.node.nodeid, index=scenario.steps.index(step), outcome="failed",
                   actual=evidence["actual"], records=evidence["records"], error=_error_text(exception),
                   start=self.step_started, end=_wall())

    @pytest.hookimpl
    def pytest_bdd_step_func_lookup_error(self, request, feature, scenario, step, exception) -> None:
        now = _wall()
        self.write(event="step", nodeid=request.node.nodeid, index=scenario.steps.index(step), outcome="undefined",
                   actual="", records=[], error=f"Undefined step: no step definition matches {step.name!r}",
                   start=now, end=now)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item, call):
        report = yield
        self.reports.setdefault(item.nodeid, []).append(report)
        if report.when == "setup" and report.failed and item.nodeid not in self.started:
            template = _template(item)
            if template is not None:
                self._scenario_event(item.nodeid, template, template.feature)
        return report

    @pytest.hookimpl
    def pytest_runtest_logfinish(self, nodeid, location) -> None:
        reports = self.reports.pop(nodeid, [])
        if nodeid not in self.started:
            return
        failed = [r for r in reports if r.failed]
        skipped = [r for r in reports if r.skipped]
        outcome = "failed" if failed else ("skipped" if skipped else "passed")
        error = None
        if failed:
            first = failed[0]
            crash = getattr(first.longrepr, "reprcrash", None)
            lines = (first.longreprtext or "").strip().splitlines()
            message = crash.message if crash is not None else (lines[-1] if lines else "")
            error = f"{ {'setup': 'set-up', 'call': 'step', 'teardown': 'tear-down'}[first.when]} failed: {message}"
        self.write(event="scenario_end", nodeid=nodeid, outcome=outcome, error=(error or None), end=_wall())

    @pytest.hookimpl
    def pytest_unconfigure(self, config) -> None:
        self.out.close()


def _template(item) -> Any | None:
    from pytest_bdd.scenario import scenario_wrapper_template_registry

    try:
        return scenario_wrapper_template_registry.get(item.obj)
    except TypeError:
        return None
