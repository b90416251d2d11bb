"""Who may use each route: the approved role x endpoint matrix, written by hand from the product's intent.

It is not derived from the views' decorators nor from core/auth/permissions.py: it says what the roles are for
(docs/administration.md, docs/security.md and each area's documentation), so that a wrong decorator, a permission
granted to the wrong role, or a new route nobody decided on is caught by tests/web/test_authorization_matrix.py.

One entry per endpoint: for each HTTP method the route accepts (GET, POST), who may use it:
- a set of role codes (a user holding any of these roles passes the route's gate; others get 403),
- ANYONE_LOGGED_IN (any role; anonymous visitors are sent to the login page),
- PUBLIC (no login: the login pages, the API description),
- API_TOKEN (the shop-floor JSON API: no login session, a personal API token on each request).

Rules on one record (only the owner of a CAPA action completes it, a supervisor sees their direct reports only, the
executor signs their own run) are checked by the services behind the gate and tested with each area.
"""

from __future__ import annotations

ANYONE_LOGGED_IN = "anyone logged in"
PUBLIC = "public"
API_TOKEN = "personal API token"

ADMIN = frozenset({"system_admin"})  # accounts and configuration only: signs nothing, edits no GxP record
QA = frozenset({"qa_approver"})  # approves documents, quality events, validation protocols and runs
AUTHOR = frozenset({"document_author"})  # writes and revises controlled documents
COORDINATOR = frozenset({"training_coordinator"})  # training matrix, assignments, job functions, HR import
EXECUTOR = frozenset({"validation_engineer"})  # executes IQ/OQ/PQ protocols
ALL_ROLES = frozenset({"system_admin", "qa_approver", "document_author", "training_coordinator", "supervisor",
                       "operator", "validation_engineer", "auditor"})
# everyone doing or inspecting GxP work reads the controlled documents and quality records; the administrator
# manages accounts and does not
RECORD_READERS = ALL_ROLES - ADMIN
# everyone doing GxP work trains on the procedures (read and sign); the administrator and the auditor do not
TRAINEES = ALL_ROLES - ADMIN - {"auditor"}
# people who follow other people's training: QA, the coordinator, supervisors (their team), auditors
TEAM_VIEWERS = frozenset({"qa_approver", "training_coordinator", "supervisor", "auditor"})
# documents are reviewed by authors, supervisors (the process owners) and QA
REVIEWERS = frozenset({"qa_approver", "document_author", "supervisor"})
# quality events are raised and worked on by QA, supervisors and validation engineers (their test incidents)
QUALITY_EDITORS = frozenset({"qa_approver", "supervisor", "validation_engineer"})
# who looks at user accounts: administrators, QA, the coordinator (training records), auditors
ACCOUNT_READERS = frozenset({"system_admin", "qa_approver", "training_coordinator", "auditor"})
# the role x permission matrix itself: administrators, QA, auditors
ROLE_MATRIX_READERS = frozenset({"system_admin", "qa_approver", "auditor"})
# audit trails (and the validation package, readable by the same people, docs/validation.md "Who sees what")
AUDIT_READERS = frozenset({"system_admin", "qa_approver", "validation_engineer", "auditor"})
AUDIT_EXPORTERS = frozenset({"qa_approver", "auditor"})


def both(who) -> dict[str, frozenset[str] | str]:
    """A page showing a form and the POST of that form: the same people."""
    return {"GET": who, "POST": who}


MATRIX: dict[str, dict[str, frozenset[str] | str]] = {
    # --- logging in, own account ---------------------------------------------------------------------------------
    "auth.login": both(PUBLIC),
    "auth.login_totp": both(PUBLIC),
    "auth.logout": {"POST": ANYONE_LOGGED_IN},
    "auth.account": both(ANYONE_LOGGED_IN),
    "auth.change_password": both(ANYONE_LOGGED_IN),
    "auth.totp_enroll": both(ANYONE_LOGGED_IN),
    "api_tokens.index": both(ANYONE_LOGGED_IN),
    "api_tokens.revoke": {"POST": ANYONE_LOGGED_IN},  # one's own token; an administrator's any token
    "api_tokens.all_tokens": {"GET": ADMIN},
    "main.index": {"GET": ALL_ROLES},
    "main.time_zones": {"GET": ANYONE_LOGGED_IN},
    # --- the shop-floor JSON API ---------------------------------------------------------------------------------
    "api.openapi": {"GET": PUBLIC},
    "api.qualification": {"GET": API_TOKEN},
    # --- administration ------------------------------------------------------------------------------------------
    "main.roles": {"GET": ROLE_MATRIX_READERS},
    "main.configuration": {"GET": ADMIN},
    "users.index": {"GET": ACCOUNT_READERS},
    "users.show": {"GET": ACCOUNT_READERS},
    "users.create": both(ADMIN),
    "users.edit": both(ADMIN),
    "users.reset_password": {"POST": ADMIN},
    "users.reset_totp": {"POST": ADMIN},
    "users.unlock": {"POST": ADMIN},
    "people_accounts.deactivate": {"POST": ADMIN},  # a person leaving: training's, on the Users page
    "people_accounts.reactivate": {"POST": ADMIN},
    # --- organisation --------------------------------------------------------------------------------------------
    "org.index": {"GET": ALL_ROLES},
    "org.create_site": both(ADMIN),
    "org.create_department": both(ADMIN),
    "job_functions.show": {"GET": ALL_ROLES},  # training's pages under /org/job-functions
    "job_functions.create": both(COORDINATOR),
    "job_functions.edit": both(COORDINATOR),
    "job_functions.deactivate": {"POST": COORDINATOR},
    "job_functions.reactivate": {"POST": COORDINATOR},
    # --- audit trail ---------------------------------------------------------------------------------------------
    "audit.log": {"GET": AUDIT_READERS},
    "audit.export_csv": {"GET": AUDIT_EXPORTERS},
    # --- document control ----------------------------------------------------------------------------------------
    "documents.register": {"GET": RECORD_READERS},
    "documents.reviews_due": {"GET": RECORD_READERS},
    "documents.show": {"GET": RECORD_READERS},
    "documents.diff": {"GET": RECORD_READERS},
    "documents.revision": {"GET": RECORD_READERS},
    "documents.content": {"GET": RECORD_READERS},
    "documents.content_pdf": {"GET": RECORD_READERS},
    "documents.controlled_copy": {"GET": RECORD_READERS},
    "documents.manifest": {"GET": RECORD_READERS},
    "documents.create": both(AUTHOR),
    "documents.settings": both(AUTHOR),
    "documents.new_revision": both(AUTHOR),
    "documents.edit_revision": both(AUTHOR),
    "documents.set_routing": {"POST": AUTHOR},
    "documents.sign_submit": both(AUTHOR),
    "documents.sign_review": both(REVIEWERS),
    "documents.sign_reject": both(REVIEWERS),  # any reviewer or approver (QA reviews too)
    "documents.sign_periodic_review": both(REVIEWERS),  # the document's owner or QA, checked on the record
    "documents.sign_approve": both(QA),
    "documents.sign_release_override": both(QA),
    "documents.sign_obsolete": both(QA),
    # --- training ------------------------------------------------------------------------------------------------
    "read_and_sign.index": {"GET": TRAINEES},
    "read_and_sign.show": {"GET": TRAINEES},
    "read_and_sign.sign": both(TRAINEES),
    "qualification.my_record": {"GET": TRAINEES},
    "qualification.my_record_pdf": {"GET": TRAINEES},
    "qualification.team": {"GET": TEAM_VIEWERS},
    "qualification.lookup": {"GET": TEAM_VIEWERS},
    "qualification.record": {"GET": TEAM_VIEWERS},  # a supervisor: their direct reports only
    "qualification.record_pdf": {"GET": TEAM_VIEWERS},
    "people.index": {"GET": TEAM_VIEWERS},
    "people.show": {"GET": TEAM_VIEWERS},
    "people.grant": {"POST": COORDINATOR},
    "people.end": {"POST": COORDINATOR},
    "training_matrix.matrix": {"GET": COORDINATOR},
    "training_matrix.gaps": {"GET": COORDINATOR},
    "training_matrix.requirement": both(COORDINATOR),
    "training_matrix.assign": both(COORDINATOR),
    "training_import.index": {"GET": COORDINATOR},
    "training_import.check": {"POST": COORDINATOR},
    "training_import.apply": {"POST": COORDINATOR},
    # --- change control ------------------------------------------------------------------------------------------
    "change_control.register": {"GET": RECORD_READERS},
    "change_control.show": {"GET": RECORD_READERS},
    "change_control.create": both(QUALITY_EDITORS),
    "change_control.edit": both(QUALITY_EDITORS),
    "change_control.scope": both(QUALITY_EDITORS),
    "change_control.add_task": {"POST": QUALITY_EDITORS},
    "change_control.task_status": {"POST": RECORD_READERS},  # a task's owner, or a quality editor: on the record
    "change_control.start": {"POST": QUALITY_EDITORS},
    "change_control.verification": {"POST": QUALITY_EDITORS},
    "change_control.sign_submit": both(QUALITY_EDITORS),
    "change_control.sign_approve": both(QA),
    "change_control.sign_reject": both(QA),
    "change_control.sign_close": both(QA),
    "change_control.sign_close_override": both(QA),
    "change_control.sign_cancel": both(QA),
    # --- deviations ----------------------------------------------------------------------------------------------
    "deviations.register": {"GET": RECORD_READERS},
    "deviations.show": {"GET": RECORD_READERS},
    "deviations.report": both(QUALITY_EDITORS),
    "deviations.edit": both(QUALITY_EDITORS),
    "deviations.start": {"POST": QUALITY_EDITORS},
    "deviations.classify": both(QUALITY_EDITORS),
    "deviations.investigation": both(QUALITY_EDITORS),
    "deviations.links": both(QUALITY_EDITORS),
    "deviations.cancel": both(QUALITY_EDITORS),
    "deviations.sign_submit": both(QUALITY_EDITORS),
    "deviations.sign_approve": both(QA),
    "deviations.sign_reject": both(QA),
    # --- CAPA ----------------------------------------------------------------------------------------------------
    "capa.register": {"GET": RECORD_READERS},
    "capa.show": {"GET": RECORD_READERS},
    "capa.create": both(QUALITY_EDITORS),
    "capa.edit": both(QUALITY_EDITORS),
    "capa.new_action": both(QUALITY_EDITORS),
    "capa.edit_action": both(QUALITY_EDITORS),
    "capa.remove_action": {"POST": QUALITY_EDITORS},
    "capa.complete_action": both(RECORD_READERS),  # the action's owner, or a quality editor: on the record
    "capa.start_effectiveness": {"POST": QUALITY_EDITORS},
    "capa.sign_effectiveness": both(QUALITY_EDITORS),
    "capa.sign_approve_plan": both(QA),
    "capa.sign_approve_retraining": both(QA),
    "capa.sign_cancel_action": both(QA),
    "capa.sign_close": both(QA),
    "capa.sign_cancel": both(QA),
    # --- validation ----------------------------------------------------------------------------------------------
    "validation.overview": {"GET": AUDIT_READERS},
    "validation.protocols": {"GET": AUDIT_READERS},
    "validation.protocol_file": {"GET": AUDIT_READERS},
    "validation.run": {"GET": AUDIT_READERS},
    "validation.run_pdf": {"GET": AUDIT_READERS},
    "validation.trace": {"GET": AUDIT_READERS},
    "validation.trace_csv": {"GET": AUDIT_READERS},
    "validation.approve_protocols": both(QA),
    "validation.start_run": {"POST": EXECUTOR},
    "validation.sign_executed": both(EXECUTOR),  # the run's executor, checked on the record
    "validation.sign_review": both(QA),
    "validation.sign_approve": both(QA),
    "validation.abandon_run": {"POST": EXECUTOR | QA},  # the run's executor or QA (docs/validation.md)
}
