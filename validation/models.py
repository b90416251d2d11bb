"""Executed validation protocols: the approved versions of the feature files, each run with its environment
fingerprint, every scenario and step with its evidence, and the signatures (Executed, Reviewed, Approved).

All of it is a GxP record: versioned and sealed into the audit hash chain like any other."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.clock import now_utc
from core.db import Versioned, db, table_args
from signatures import models as sig
from signatures.services import register

PROTOCOLS = {"IQ": "Installation qualification", "OQ": "Operational qualification",
             "PQ": "Performance qualification", "CANARY": "Runner canaries (tool adequacy)"}

APPROVED = "approved"
SUPERSEDED = "superseded"

QUEUED = "queued"
RUNNING = "running"
COMPLETED = "completed"  # every scenario executed; waiting for the executor's signature
ERROR = "error"  # the runner itself failed (no result)
EXECUTED = "executed"
REVIEWED = "reviewed"
RUN_APPROVED = "approved"
RUN_STATUS_LABELS = {QUEUED: "Queued", RUNNING: "Running", COMPLETED: "Completed (to be signed)",
                     ERROR: "Runner error", EXECUTED: "Executed (signed)", REVIEWED: "Reviewed by QA",
                     RUN_APPROVED: "Approved by QA"}

PASSED = "passed"
FAILED = "failed"
NOT_RUN = "not run"
UNDEFINED = "undefined"


@register
class ProtocolVersion(Versioned, db.Model):
    """One approved version of one feature file (its exact text and SHA-256) or of one protocol's step code (the
    manifest of its Python files' SHA-256, and the manifest's SHA-256). Only a file or step code whose SHA-256 matches
    its approved version may be executed. Written once, at approval, and signed "Approved" by QA."""

    __tablename__ = "val_protocol_version"
    __table_args__ = table_args(sa.UniqueConstraint("path", "version"))
    __audit_label__ = "Protocol version"

    id: Mapped[int] = mapped_column(primary_key=True)
    protocol: Mapped[str] = mapped_column(sa.String(8), index=True, info={"label": "Protocol"})
    path: Mapped[str] = mapped_column(sa.String(300), index=True, info={"label": "Feature file or step code"})
    version: Mapped[int] = mapped_column(info={"label": "Version"})
    sha256: Mapped[str] = mapped_column(sa.String(64), info={"label": "SHA-256"})
    content: Mapped[str] = mapped_column(sa.Text, info={"label": "Content"})
    status: Mapped[str] = mapped_column(sa.String(16), default=APPROVED, info={"label": "Status"})
    approved_by_id: Mapped[int] = mapped_column(sa.ForeignKey("core_user.id"), info={"label": "Approved by"})
    approved_at: Mapped[datetime] = mapped_column(default=now_utc, info={"label": "Approved at"})
    reason: Mapped[str | None] = mapped_column(sa.Text, info={"label": "Reason for the new version"})

    approved_by = relationship("User")

    signable_type = "val_protocol_version"
    allowed_meanings = (sig.APPROVED,)

    @property
    def signable_version(self) -> str:
        return f"v{self.version}"

    def signable_title(self) -> str:
        return self.audit_title()

    def audit_title(self) -> str:
        return f"Protocol {self.path} version {self.version}"

    def canonical_content(self) -> bytes:
        return json.dumps({"type": self.signable_type, "protocol": self.protocol, "path": self.path,
                           "version": self.version, "sha256": self.sha256}, sort_keys=True).encode("utf-8")


@register
class ValidationRun(Versioned, db.Model):
    __tablename__ = "val_run"
    __table_args__ = table_args()
    __audit_label__ = "Validation run"

    id: Mapped[int] = mapped_column(primary_key=True)
    protocol: Mapped[str] = mapped_column(sa.String(8), index=True, info={"label": "Protocol"})
    status: Mapped[str] = mapped_column(sa.String(16), default=QUEUED, index=True, info={"label": "Status"})
    result: Mapped[str | None] = mapped_column(sa.String(16), info={"label": "Result"})
    executor_id: Mapped[int] = mapped_column(sa.ForeignKey("core_user.id"), index=True, info={"label": "Executor"})
    created_at: Mapped[datetime] = mapped_column(default=now_utc, info={"label": "Created at"})
    started_at: Mapped[datetime | None] = mapped_column(info={"label": "Started at"})
    finished_at: Mapped[datetime | None] = mapped_column(info={"label": "Finished at"})
    scenarios: Mapped[int] = mapped_column(default=0, info={"label": "Scenarios"})
    steps: Mapped[int] = mapped_column(default=0, info={"label": "Steps"})
    passed: Mapped[int] = mapped_column(default=0, info={"label": "Steps passed"})
    failed: Mapped[int] = mapped_column(default=0, info={"label": "Steps failed"})
    not_run: Mapped[int] = mapped_column(default=0, info={"label": "Steps not run"})
    app_version: Mapped[str | None] = mapped_column(sa.String(64), info={"label": "Application version"})
    commit: Mapped[str | None] = mapped_column(sa.String(64), info={"label": "Commit"})
    database: Mapped[str | None] = mapped_column(sa.String(200), info={"label": "Scratch database"})
    fingerprint: Mapped[str | None] = mapped_column(sa.Text, info={"label": "Environment fingerprint"})
    fingerprint_sha256: Mapped[str | None] = mapped_column(sa.String(64), info={"label": "Fingerprint SHA-256"})
    error: Mapped[str | None] = mapped_column(sa.Text, info={"label": "Runner error"})
    row_version: Mapped[int] = mapped_column(default=1, info={"label": "Row version"})

    __mapper_args__ = {"version_id_col": row_version}

    executor = relationship("User")
    files: Mapped[list[RunFile]] = relationship(order_by="RunFile.path", cascade="all, delete-orphan")
    scenario_results: Mapped[list[ScenarioResult]] = relationship(order_by="ScenarioResult.position",
                                                                  cascade="all, delete-orphan")

    signable_type = "val_run"
    allowed_meanings = (sig.EXECUTED, sig.REVIEWED, sig.APPROVED)

    @property
    def status_label(self) -> str:
        return RUN_STATUS_LABELS.get(self.status, self.status)

    @property
    def fingerprint_data(self) -> dict[str, Any]:
        return json.loads(self.fingerprint) if self.fingerprint else {}

    @property
    def signable_version(self) -> str:
        return f"{self.status} v{self.row_version}"

    @property
    def concurrency_token(self) -> str:
        return str(self.row_version)

    def signable_title(self) -> str:
        return self.audit_title()

    def audit_title(self) -> str:
        return f"Validation run {self.id} ({self.protocol})"

    def results_sha256(self) -> str:
        """SHA-256 over every step's outcome and evidence, in order: a signature on the run binds the results."""
        digest = hashlib.sha256()
        rows = db.session.execute(
            sa.select(StepResult.id, StepResult.text, StepResult.outcome, StepResult.actual, StepResult.evidence,
                      StepResult.error).where(StepResult.run_id == self.id).order_by(StepResult.id)).all()
        for row in rows:
            digest.update(json.dumps([str(v) if v is not None else None for v in row]).encode("utf-8"))
        return digest.hexdigest()

    def canonical_content(self) -> bytes:
        return json.dumps({"type": self.signable_type, "id": self.id, "protocol": self.protocol,
                           "status": self.status, "result": self.result, "scenarios": self.scenarios,
                           "steps": self.steps, "passed": self.passed, "failed": self.failed,
                           "not_run": self.not_run, "fingerprint_sha256": self.fingerprint_sha256,
                           "results_sha256": self.results_sha256()}, sort_keys=True).encode("utf-8")


class RunFile(Versioned, db.Model):
    """A feature file (or the step code) a run executed, with the SHA-256 it had and the approved version it
    matched."""

    __tablename__ = "val_run_file"
    __table_args__ = table_args()
    __audit_label__ = "Validation run file"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(sa.ForeignKey("val_run.id"), index=True, info={"label": "Run"})
    path: Mapped[str] = mapped_column(sa.String(300), info={"label": "Feature file or step code"})
    sha256: Mapped[str] = mapped_column(sa.String(64), info={"label": "SHA-256"})
    protocol_version_id: Mapped[int] = mapped_column(sa.ForeignKey("val_protocol_version.id"), index=True,
                                                     info={"label": "Approved version"})

    protocol_version = relationship("ProtocolVersion")


class ScenarioResult(Versioned, db.Model):
    __tablename__ = "val_scenario_result"
    __table_args__ = table_args()
    __audit_label__ = "Executed scenario"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(sa.ForeignKey("val_run.id"), index=True, info={"label": "Run"})
    position: Mapped[int] = mapped_column(info={"label": "Position"})
    feature_path: Mapped[str] = mapped_column(sa.String(300), info={"label": "Feature file"})
    feature_name: Mapped[str] = mapped_column(sa.String(300), info={"label": "Feature"})
    name: Mapped[str] = mapped_column(sa.String(500), info={"label": "Scenario"})
    tags: Mapped[str] = mapped_column(sa.String(1000), default="", info={"label": "Requirements"})
    outcome: Mapped[str] = mapped_column(sa.String(16), info={"label": "Outcome"})
    started_at: Mapped[datetime | None] = mapped_column(info={"label": "Started at"})
    finished_at: Mapped[datetime | None] = mapped_column(info={"label": "Finished at"})
    error: Mapped[str | None] = mapped_column(sa.Text, info={"label": "Error"})

    step_results: Mapped[list[StepResult]] = relationship(order_by="StepResult.position",
                                                          cascade="all, delete-orphan")

    @property
    def requirement_ids(self) -> list[str]:
        return [t for t in self.tags.split() if t]

    def audit_title(self) -> str:
        return f"Scenario {self.name!r} of run {self.run_id}"


class StepResult(Versioned, db.Model):
    __tablename__ = "val_step_result"
    __table_args__ = table_args()
    __audit_label__ = "Executed step"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(sa.ForeignKey("val_run.id"), index=True, info={"label": "Run"})
    scenario_id: Mapped[int] = mapped_column(sa.ForeignKey("val_scenario_result.id"), index=True,
                                             info={"label": "Scenario"})
    position: Mapped[int] = mapped_column(info={"label": "Position"})
    keyword: Mapped[str] = mapped_column(sa.String(16), info={"label": "Keyword"})
    text: Mapped[str] = mapped_column(sa.Text, info={"label": "Step"})
    expected: Mapped[str] = mapped_column(sa.Text, info={"label": "Expected result"})
    actual: Mapped[str | None] = mapped_column(sa.Text, info={"label": "Actual result"})
    outcome: Mapped[str] = mapped_column(sa.String(16), info={"label": "Outcome"})
    evidence: Mapped[str | None] = mapped_column(sa.Text, info={"label": "Evidence"})
    error: Mapped[str | None] = mapped_column(sa.Text, info={"label": "Error"})
    started_at: Mapped[datetime | None] = mapped_column(info={"label": "Started at"})
    finished_at: Mapped[datetime | None] = mapped_column(info={"label": "Finished at"})
    incident_id: Mapped[int | None] = mapped_column(sa.ForeignKey("qms_deviation.id"), index=True,
                                                    info={"label": "Test incident"})

    incident = relationship("Deviation")

    @property
    def evidence_items(self) -> list[tuple[str, str]]:
        return [tuple(item) for item in json.loads(self.evidence)] if self.evidence else []

    def audit_title(self) -> str:
        return f"Step {self.position} of scenario {self.scenario_id} (run {self.run_id})"
