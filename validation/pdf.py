"""The executed protocol of a validation run as a PDF: the run, its environment fingerprint and feature files, every
scenario and step with expected and actual result, outcome, evidence and error, the test incidents, and the
manifestation of each signature (21 CFR 11.50: printed name, date and time in UTC, meaning), or "not yet signed".

The run id, protocol, status and result head every page; the footer says who printed it when and "Page n of m". The
page is the frame every printed record shares (core.pdf: A4, the DejaVu fonts shipped with Attest)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from core.pdf import RecordPdf
from validation.models import ValidationRun


def utc(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S") + " UTC" if moment else "—"


class RunPdf(RecordPdf):
    """The executed protocol's header (the run) and footer (who printed it when) on the shared frame."""

    def __init__(self, run: ValidationRun, printed_by: str, printed_at: datetime):
        super().__init__()
        self.run, self.printed_by, self.printed_at = run, printed_by, printed_at
        self.set_font(self.family, size=9)

    def safe(self, text: Any) -> str:
        return self.text_safe("" if text is None else str(text))

    def header(self) -> None:
        r = self.run
        self.running_header(f"Executed validation protocol — run {r.id} ({r.protocol})",
                            f"Status: {r.status_label} · Result: {r.result or 'none'} · Executor: "
                            f"{r.executor.full_name} ({r.executor.username})")
        self.set_font(self.family, "", 9)

    def footer(self) -> None:
        self.running_footer([f"Printed by {self.printed_by} at {utc(self.printed_at)} from Attest; the electronic "
                             f"record in Attest is the original."])

    def heading(self, text: str, size: int = 12) -> None:
        if self.get_y() + 18 > self.page_break_trigger:
            self.add_page()
        self.ln(2)
        self.set_font(self.family, "B", size)
        self.multi_cell(0, size * 0.6, self.safe(text), align="L", new_x="LMARGIN", new_y="NEXT")
        self.set_font(self.family, "", 9)

    def line_of(self, label: str, value: Any, size: int = 9) -> None:
        self.set_font(self.family, "B", size)
        self.write(4.6, self.safe(f"{label}: "))
        self.set_font(self.family, "", size)
        self.multi_cell(0, 4.6, self.safe(value), align="L", new_x="LMARGIN", new_y="NEXT")


def _fingerprint(pdf: RunPdf, run: ValidationRun) -> None:
    data = run.fingerprint_data
    pdf.heading("Environment fingerprint")
    if not data:
        pdf.multi_cell(0, 5, "Not recorded (the run has not started).", new_x="LMARGIN", new_y="NEXT")
    else:
        app, py, system = data.get("application", {}), data.get("python", {}), data.get("os", {})
        pdf.line_of("Application", f"{app.get('name', 'attest')} {app.get('version')} · commit "
                                   f"{app.get('commit') or 'unknown'}"
                                   + (f" · installed at {app['installed_at']}" if app.get("installed_at") else ""))
        pdf.line_of("Python", f"{py.get('implementation')} {py.get('version')}")
        pdf.line_of("Database", data.get("database", {}).get("scratch"))
        pdf.line_of("Operating system", f"{system.get('platform')} · {system.get('machine')} · host "
                                        f"{system.get('node')}")
        pdf.line_of("Installed packages", f"{len(data.get('packages', {}))} (listed in the electronic record)")
        pdf.line_of("Fingerprint SHA-256", run.fingerprint_sha256)
    pdf.heading("Feature files and step code executed", 10)
    for f in run.files:
        version = f.protocol_version
        pdf.line_of(f.path, f"SHA-256 {f.sha256} · approved version {version.version} by "
                            f"{version.approved_by.full_name} at {utc(version.approved_at)}", size=8)
    if not run.files:
        pdf.multi_cell(0, 5, "None.", new_x="LMARGIN", new_y="NEXT")


def _scenarios(pdf: RunPdf, run: ValidationRun) -> list[tuple[Any, Any, Any]]:
    incidents = []
    pdf.heading(f"Scenarios and steps ({len(run.scenario_results)} scenarios)")
    for sc in run.scenario_results:
        pdf.heading(f"{sc.position}. {sc.name} — {sc.outcome.upper()}", 10)
        pdf.line_of("Feature", f"{sc.feature_name} ({sc.feature_path})", size=8)
        pdf.line_of("Tags (requirements)", ", ".join(sc.requirement_ids) or "none", size=8)
        pdf.line_of("Executed", f"{utc(sc.started_at)} → {utc(sc.finished_at)}", size=8)
        if sc.error:
            pdf.line_of("Scenario error", sc.error, size=8)
        for st in sc.step_results:
            if pdf.get_y() + 24 > pdf.page_break_trigger:
                pdf.add_page()
            pdf.ln(1)
            pdf.set_font(pdf.family, "B", 9)
            pdf.multi_cell(0, 4.8, pdf.safe(f"Step {st.position}: {st.keyword} {st.text}"), align="L",
                           new_x="LMARGIN", new_y="NEXT")
            pdf.line_of("Expected", st.expected, size=8)
            pdf.line_of("Actual", st.actual or "—", size=8)
            pdf.line_of("Outcome", st.outcome.upper(), size=8)
            if st.evidence_items:
                pdf.line_of("Evidence", "; ".join(f"{label}: {value}" for label, value in st.evidence_items), size=8)
            if st.error:
                pdf.line_of("Error", st.error, size=8)
            pdf.line_of("Time", f"{utc(st.started_at)} → {utc(st.finished_at)}", size=8)
            if st.incident is not None:
                pdf.line_of("Test incident", st.incident.number, size=8)
                incidents.append((st.incident, sc, st))
    if not run.scenario_results:
        pdf.multi_cell(0, 5, "No scenario recorded.", new_x="LMARGIN", new_y="NEXT")
    return incidents


def _signatures(pdf: RunPdf, slots: list[tuple[str, str, list]]) -> None:
    pdf.heading("Electronic signatures")
    pdf.multi_cell(0, 4.6, pdf.safe(
        "Each signature is an electronic signature under 21 CFR Part 11, bound to the SHA-256 of the run's signed "
        "record (status, counts, environment fingerprint and every step's outcome and evidence). Times are UTC."),
        align="L", new_x="LMARGIN", new_y="NEXT")
    for meaning, who, lines in slots:
        pdf.ln(1)
        if not lines:
            pdf.line_of(f"{meaning} ({who})", "not yet signed")
        for s, _manifestation, state in lines:
            status = {"valid": "valid", "earlier": f"signed when the run was {s.record_version}"}.get(
                state, "INVALID: record altered after signing")
            pdf.line_of(f"{meaning} ({who})", f"{s.printed_name} — {s.meaning} — {utc(s.signed_at)}")
            pdf.line_of("Comment", s.comment or "none", size=8)
            pdf.line_of("Signature", f"{status}; authenticated by {s.auth_method}; signed record SHA-256 "
                                     f"{s.content_sha256}", size=8)


def run_pdf(run: ValidationRun, *, signatures: list[tuple[str, str, list]], printed_by: str,
            printed_at: datetime) -> bytes:
    """`signatures`: (meaning, who signs, [(signature, manifestation, status)]) for Executed, Reviewed, Approved."""
    pdf = RunPdf(run, printed_by, printed_at)
    pdf.add_page()
    pdf.set_font(pdf.family, "B", 14)
    pdf.cell(0, 8, pdf.safe(f"Validation run {run.id}: {run.protocol}"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(pdf.family, "", 9)
    for label, value in (("Status", run.status_label), ("Result", run.result or "none"),
                         ("Executor", f"{run.executor.full_name} ({run.executor.username})"),
                         ("Queued", utc(run.created_at)), ("Started", utc(run.started_at)),
                         ("Finished", utc(run.finished_at)), ("Scratch database", run.database or "—"),
                         ("Counts", f"{run.scenarios} scenario(s), {run.steps} step(s): {run.passed} passed, "
                                    f"{run.failed} failed, {run.not_run} not run")):
        pdf.line_of(label, value)
    if run.error:
        pdf.line_of("Runner error", run.error)
    _fingerprint(pdf, run)
    incidents = _scenarios(pdf, run)
    pdf.heading(f"Test incidents ({len(incidents)})")
    for incident, sc, st in incidents:
        pdf.line_of(incident.number, f"{incident.status_label} — scenario “{sc.name}”, step {st.position}: "
                                     f"{st.keyword} {st.text}", size=8)
    if not incidents:
        pdf.multi_cell(0, 5, "None.", new_x="LMARGIN", new_y="NEXT")
    _signatures(pdf, signatures)
    return bytes(pdf.output())
