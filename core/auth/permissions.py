"""Permissions and roles: the registry that assembles the approved role x permission matrix.

The matrix is part of the validated software: it changes only through a release (change control), never through a
settings screen, so an inspector can read it in the code and on the Roles page. Each package declares, in its
`init_app`, the permissions it checks, the roles it introduces and the grants of permissions to roles
(docs/architecture.md); a grant is declared by the higher of the two packages it joins (the one that knows both
the role and the permission), so it is always registered after both. Core keeps the mechanism, its own permissions
(accounts, configuration, audit trail, organisation) and its two roles, and the rules every assembled matrix obeys:
a system administrator manages accounts and configuration only, with no signing and no record-editing permission
(segregation of duties).

Registration is idempotent (create_app runs once per test): declaring the same permission, role or grant again
changes nothing; declaring a code again with another meaning is refused. The dictionaries are filled in place and
kept in display order (`position`), so a module that imported them sees the assembled matrix.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Permission:
    code: str
    label: str
    signing: bool = False  # the holder applies electronic signatures with it
    edits_records: bool = False  # the holder creates or changes GxP records with it


@dataclass(frozen=True)
class Role:
    code: str
    name: str
    description: str
    permissions: frozenset[str] = frozenset()  # the assembled grants of every package

    @property
    def signing(self) -> bool:
        return any(PERMISSIONS[p].signing for p in self.permissions)


PERMISSIONS: dict[str, Permission] = {}
ROLES: dict[str, Role] = {}
# display order of the Roles page, the role pickers and the command line: (position, declaration order)
_ORDER: dict[tuple[int, str], tuple[int, int]] = {}


def _place(registry: dict, code: str, value, position: int) -> None:
    key = (id(registry), code)
    if key not in _ORDER:
        _ORDER[key] = (position, len(_ORDER))
    registry[code] = value
    ordered = sorted(registry.items(), key=lambda item: _ORDER[(id(registry), item[0])])
    registry.clear()
    registry.update(ordered)


def register_permissions(permissions: Iterable[Permission], *, position: int) -> None:
    """Declare the permissions a package checks; `position` places them (in their order) on the Roles page."""
    for permission in permissions:
        known = PERMISSIONS.get(permission.code)
        if known == permission:
            continue
        if known is not None:
            raise RuntimeError(f"permission {permission.code} is declared twice, differently: {known} and {permission}")
        _place(PERMISSIONS, permission.code, permission, position)


def register_role(code: str, name: str, description: str, *, position: int) -> None:
    """Declare a role (without permissions: those come with `grant`); `position` places its column."""
    known = ROLES.get(code)
    if known is not None:
        if (known.name, known.description) != (name, description):
            raise RuntimeError(f"role {code} is declared twice, differently")
        return
    _place(ROLES, code, Role(code, name, description), position)


def grant(role_code: str, permission_codes: Iterable[str]) -> None:
    """Grant permissions to a role. Both must be declared already; the matrix rules are checked at once."""
    role = ROLES.get(role_code)
    if role is None:
        raise RuntimeError(f"grant to an unknown role {role_code!r}: declare it first (a grant is declared by the "
                           f"higher of the role's and the permission's packages)")
    codes = frozenset(permission_codes)
    unknown = codes - PERMISSIONS.keys()
    if unknown:
        raise RuntimeError(f"role {role_code} is granted unknown permissions {sorted(unknown)}")
    if codes <= role.permissions:
        return
    ROLES[role_code] = replace(role, permissions=role.permissions | codes)
    check_matrix()


def register_package(*, permissions: Iterable[Permission] = (), position: int = 0,
                     roles: Iterable[tuple[str, str, str, int]] = (),
                     grants: Mapping[str, Iterable[str]] | None = None) -> None:
    """A package's part of the matrix at once: its permissions (at `position`), its roles (code, name, description,
    position) and its grants (role code -> permission codes)."""
    register_permissions(permissions, position=position)
    for code, name, description, role_position in roles:
        register_role(code, name, description, position=role_position)
    for role, codes in (grants or {}).items():
        grant(role, codes)


def permissions_for(role_codes: set[str] | frozenset[str]) -> frozenset[str]:
    perms: set[str] = set()
    for code in role_codes:
        perms |= ROLES[code].permissions
    return frozenset(perms)


def holds_signing_permission(role_codes: set[str] | frozenset[str]) -> bool:
    return any(ROLES[c].signing for c in role_codes)


def check_matrix() -> None:
    """The rules every assembled matrix obeys, whichever packages granted what."""
    for role in ROLES.values():
        unknown = role.permissions - PERMISSIONS.keys()
        if unknown:
            raise RuntimeError(f"role {role.code} names unknown permissions {sorted(unknown)}")
    admin = ROLES.get("system_admin")
    if admin is not None and any(PERMISSIONS[p].signing or PERMISSIONS[p].edits_records for p in admin.permissions):
        raise RuntimeError("segregation of duties: the system administrator role must not sign or edit records")


# --- core's own part of the matrix (registered by core.init_app) -------------------------------------------------

CORE_PERMISSIONS = (
    Permission("dashboard.view", "See the home page"),
    Permission("users.view", "See user accounts"),
    Permission("users.manage", "Create, change, deactivate and unlock user accounts; grant roles"),
    Permission("roles.view", "See the role and permission matrix"),
    Permission("config.view", "See the effective system configuration"),
    Permission("audit.view", "See audit trails and the global audit log"),
    Permission("audit.export", "Export the audit log"),
    Permission("org.view", "See sites, departments and job functions"),
)

# what every role doing or inspecting GxP work holds of core's permissions; packages grant it to their roles
EVERYONE = frozenset({"dashboard.view", "org.view"})


CORE_ROLES = (
    ("system_admin", "System administrator",
     "Manages accounts and configuration; holds no signing or record-editing permission.", 10),
    ("auditor", "Auditor (read-only)", "Inspects records and audit trails; changes nothing.", 80),
)
CORE_GRANTS = {
    "system_admin": {"dashboard.view", "users.view", "users.manage", "roles.view", "config.view", "audit.view",
                     "org.view"},
    "auditor": EVERYONE | {"audit.view", "audit.export", "roles.view", "users.view"},
}


def register_core() -> None:
    register_package(permissions=CORE_PERMISSIONS, position=10, roles=CORE_ROLES, grants=CORE_GRANTS)
