"""Permissions and roles: the approved role x permission matrix.

The matrix is part of the validated software: it changes only through a release (change control), never through a
settings screen, so an inspector can read it here and on the Roles page. A system administrator manages accounts and
configuration only: no signing and no record-editing permission (segregation of duties).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Permission:
    code: str
    label: str
    signing: bool = False  # the holder applies electronic signatures with it
    edits_records: bool = False  # the holder creates or changes GxP records with it


PERMISSIONS: dict[str, Permission] = {
    p.code: p
    for p in (
        Permission("dashboard.view", "See the home page"),
        Permission("users.view", "See user accounts"),
        Permission("users.manage", "Create, change, deactivate and unlock user accounts; grant roles"),
        Permission("roles.view", "See the role and permission matrix"),
        Permission("config.view", "See the effective system configuration"),
        Permission("audit.view", "See audit trails and the global audit log"),
        Permission("audit.export", "Export the audit log"),
        Permission("org.view", "See sites, departments and job functions"),
        Permission("documents.view", "See controlled documents"),
        Permission("documents.author", "Author document revisions", signing=True, edits_records=True),
        Permission("documents.review", "Review document revisions", signing=True),
        Permission("documents.approve", "Approve document revisions (QA)", signing=True),
        Permission("quality.view", "See change controls, deviations and CAPAs"),
        Permission("quality.manage", "Raise and edit change controls, deviations and CAPAs", edits_records=True),
        Permission("quality.approve", "Approve and close change controls, deviations and CAPAs (QA)", signing=True),
        Permission("training.view_own", "See and complete own training (read and sign)", signing=True),
        Permission("training.view_team", "See the team's training status"),
        Permission("training.manage", "Maintain the training matrix and assign training", edits_records=True),
        Permission("validation.execute", "Execute validation protocols", signing=True, edits_records=True),
        Permission("validation.approve", "Review and approve validation runs", signing=True),
    )
}


@dataclass(frozen=True)
class Role:
    code: str
    name: str
    description: str
    permissions: frozenset[str]

    @property
    def signing(self) -> bool:
        return any(PERMISSIONS[p].signing for p in self.permissions)


_READ = {"dashboard.view", "documents.view", "org.view", "quality.view"}

ROLES: dict[str, Role] = {
    r.code: r
    for r in (
        Role("system_admin", "System administrator",
             "Manages accounts and configuration; holds no signing or record-editing permission.",
             frozenset({"dashboard.view", "users.view", "users.manage", "roles.view", "config.view", "audit.view",
                        "org.view"})),
        Role("qa_approver", "QA approver", "Approves documents, quality events and validation runs.",
             frozenset(_READ | {"documents.review", "documents.approve", "quality.manage", "quality.approve",
                                "validation.approve", "audit.view", "audit.export", "training.view_own",
                                "training.view_team", "roles.view", "users.view"})),
        Role("document_author", "Document author", "Writes and revises controlled documents.",
             frozenset(_READ | {"documents.author", "documents.review", "training.view_own"})),
        Role("training_coordinator", "Training coordinator", "Maintains the training matrix and assignments.",
             frozenset(_READ | {"training.manage", "training.view_team", "training.view_own", "users.view"})),
        Role("supervisor", "Supervisor", "Leads a team; follows its training and raises quality events.",
             frozenset(_READ | {"training.view_team", "training.view_own", "quality.manage", "documents.review"})),
        Role("operator", "Operator", "Performs GxP work; completes read-and-sign training.",
             frozenset(_READ | {"training.view_own"})),
        Role("validation_engineer", "Validation engineer",
             "Executes IQ/OQ/PQ protocols; raises and investigates their test incidents (deviations).",
             frozenset(_READ | {"validation.execute", "quality.manage", "training.view_own", "audit.view"})),
        Role("auditor", "Auditor (read-only)", "Inspects records and audit trails; changes nothing.",
             frozenset(_READ | {"audit.view", "audit.export", "roles.view", "users.view", "training.view_team"})),
    )
}


def permissions_for(role_codes: set[str] | frozenset[str]) -> frozenset[str]:
    perms: set[str] = set()
    for code in role_codes:
        perms |= ROLES[code].permissions
    return frozenset(perms)


def holds_signing_permission(role_codes: set[str] | frozenset[str]) -> bool:
    return any(ROLES[c].signing for c in role_codes)


def _check_matrix() -> None:
    for role in ROLES.values():
        unknown = role.permissions - PERMISSIONS.keys()
        if unknown:
            raise RuntimeError(f"role {role.code} names unknown permissions {sorted(unknown)}")
    admin = ROLES["system_admin"]
    if any(PERMISSIONS[p].signing or PERMISSIONS[p].edits_records for p in admin.permissions):
        raise RuntimeError("segregation of duties: the system administrator role must not sign or edit records")


_check_matrix()
