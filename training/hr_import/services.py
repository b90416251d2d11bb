"""People from the HR system (HRIS): a CSV file planned as a dry run, then applied as one unit of work.

`plan()` reads the file and the database and writes nothing: it lists the accounts to create, the changes to existing
accounts (profile, supervisor, job functions gained and ended), the deactivations, and every row error with its row
number as a spreadsheet shows it (the header is row 1), its column and the rule broken. `apply()` plans again inside
the caller's transaction and refuses a file with any error, so a file is imported whole or not at all. Changes go
through the account and job-function services, which reconcile each person's training assignments (the engine) in
the same transaction. Applying a file that was already applied finds nothing to change and writes nothing.

Segregation of duties: the import is a training coordinator's task (`training.manage`), but giving someone access to
Attest stays an administrator's (`users.manage`). An imported account therefore gets the operator role and no
usable password; it can log in only after an administrator resets its password and hands the temporary one over.
The import never changes roles and never reactivates a deactivated account (that would restore its old access).
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import sqlalchemy as sa

from core.auth import services as accounts
from core.auth.models import User
from core.clock import now_utc
from core.db import db
from core.errors import AttestError, NotPermitted, ValidationError
from core.org import Department, JobFunction, Site
from training.models import OPEN, SOURCE_IMPORT, TrainingAssignment, UserJobFunction
from training.people import services

COLUMNS = ("username", "name", "email", "site", "department", "job_functions", "supervisor", "active")
MAX_BYTES = 5 * 1024 * 1024
MAX_ROWS = 20_000
IMPORTED_ROLE = "operator"
# Not an argon2 hash: no password verifies against it, so the account cannot log in before an administrator resets
# its password (Users > Reset password), which also keeps "must change password at next login".
NO_PASSWORD = "!set-by-administrator"
TRUE_VALUES = frozenset({"yes", "true", "1"})
FALSE_VALUES = frozenset({"no", "false", "0"})
_CHUNK = 500  # names or ids per IN (...) query


@dataclass(frozen=True)
class RowError:
    """`row` as a spreadsheet numbers it (None: the whole file); `column` as named in the header (None: the row)."""

    row: int | None
    column: str | None
    rule: str

    def __str__(self) -> str:
        if self.row is None:
            return f"file: {self.rule}"
        return f"row {self.row}, column {self.column}: {self.rule}" if self.column else f"row {self.row}: {self.rule}"


@dataclass(frozen=True)
class FieldChange:
    column: str
    old: str
    new: str

    def __str__(self) -> str:
        return f"{self.column} {self.old!r} -> {self.new!r}"


@dataclass
class _Person:
    """One valid row, resolved against the database."""

    row: int
    username: str
    active: bool
    full_name: str = ""
    email: str = ""
    site: Site | None = None
    department: Department | None = None
    functions: list[JobFunction] = field(default_factory=list)
    supervisor: str = ""
    user: User | None = None
    ok: bool = True  # no error so far: the row may change something


@dataclass(frozen=True)
class Creation:
    row: int
    username: str
    full_name: str
    email: str
    site: str
    department: str
    supervisor: str
    job_functions: tuple[str, ...]
    person: _Person = field(repr=False, compare=False)

    def __str__(self) -> str:
        return (f"create {self.username}: {self.full_name} <{self.email}>, site {self.site or '-'}, department "
                f"{self.department or '-'}, supervisor {self.supervisor or '-'}, job functions "
                f"{'; '.join(self.job_functions) or '-'} (row {self.row})")


@dataclass(frozen=True)
class Update:
    row: int
    username: str
    changes: tuple[FieldChange, ...]
    added: tuple[str, ...]  # job function codes the person starts holding today
    ended: tuple[str, ...]  # job function codes the person stops holding today
    person: _Person = field(repr=False, compare=False)
    grant_ids: tuple[int, ...] = field(repr=False, compare=False, default=())
    end_rows: tuple[UserJobFunction, ...] = field(repr=False, compare=False, default=())

    def __str__(self) -> str:
        parts = [str(c) for c in self.changes]
        if self.added:
            parts.append("job functions added: " + "; ".join(self.added))
        if self.ended:
            parts.append("job functions ended: " + "; ".join(self.ended))
        return f"update {self.username}: {', '.join(parts)} (row {self.row})"


@dataclass(frozen=True)
class Deactivation:
    row: int
    username: str
    full_name: str
    open_training: int  # open assignments the deactivation cancels
    user: User = field(repr=False, compare=False)

    def __str__(self) -> str:
        return (f"deactivate {self.username}: {self.full_name}; {self.open_training} open training assignment(s) "
                f"cancelled (row {self.row})")


@dataclass
class ImportPlan:
    rows: int = 0
    creations: list[Creation] = field(default_factory=list)
    updates: list[Update] = field(default_factory=list)
    deactivations: list[Deactivation] = field(default_factory=list)
    unchanged: int = 0
    errors: list[RowError] = field(default_factory=list)
    text_sha256: str = ""

    @property
    def changes(self) -> int:
        return len(self.creations) + len(self.updates) + len(self.deactivations)

    def lines(self) -> list[str]:
        """The report, one line per change then per error."""
        return [str(x) for x in (*self.creations, *self.updates, *self.deactivations, *self.errors)]

    @property
    def fingerprint(self) -> str:
        """Identifies the file and what applying it would do now: a page applies only the plan its user reviewed."""
        return hashlib.sha256("\n".join([self.text_sha256, *self.lines()]).encode()).hexdigest()

    def summary(self) -> str:
        return (f"created={len(self.creations)} updated={len(self.updates)} deactivated={len(self.deactivations)} "
                f"unchanged={self.unchanged} errors={len(self.errors)}")


class PlanChanged(AttestError):
    """What the file would do differs from the dry run its user reviewed (the data changed in between)."""

    status = 409


# --- reading the file -------------------------------------------------------------------------------------------------


def read_text(data: str | bytes) -> tuple[str, RowError | None]:
    """The file as text (UTF-8, with or without BOM; line breaks normalised), or why it cannot be read."""
    size = len(data) if isinstance(data, bytes) else len(data.encode("utf-8", "surrogatepass"))
    if size > MAX_BYTES:
        return "", RowError(None, None, f"The file has {size / 1024 / 1024:.1f} MB; at most "
                                        f"{MAX_BYTES // 1024 // 1024} MB can be imported at once: split it.")
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            return "", RowError(None, None, f"The file is not UTF-8 text (byte {exc.start + 1}); save it as "
                                            f"\"CSV UTF-8\".")
    if "\0" in data:
        return "", RowError(None, None, "The file contains NUL characters: it is not a CSV text file.")
    # browsers send a form's line breaks as CRLF: normalise so the text checked and the text applied are the same
    return data.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n"), None


def _records(text: str, result: ImportPlan) -> Iterator[tuple[int, dict[str, str]]]:
    """(spreadsheet row number, column -> stripped value) for each non-blank row; errors go to `result`."""
    reader = csv.reader(io.StringIO(text))
    row = 1
    try:
        header = next(reader, None)
        names = [h.strip().lower() for h in header or []]
        missing = [c for c in COLUMNS if c not in names]
        if missing:
            result.errors.append(RowError(None, None, f"The first row must name the columns; missing: "
                                                      f"{', '.join(missing)} (expected: {', '.join(COLUMNS)})."))
            return
        repeated = sorted({n for n in names if n and names.count(n) > 1})
        if repeated:
            result.errors.append(RowError(None, None, f"Column(s) named twice in the first row: "
                                                      f"{', '.join(repeated)}."))
            return
        index = {c: names.index(c) for c in COLUMNS}
        for row, values in enumerate(reader, start=2):
            if not any(v.strip() for v in values):
                continue
            result.rows += 1
            if result.rows > MAX_ROWS:
                result.errors.append(RowError(None, None, f"The file has more than {MAX_ROWS:,} rows of people; "
                                                          f"split it."))
                return
            if len(values) != len(names):
                result.errors.append(RowError(row, None, f"The row has {len(values)} values but the first row names "
                                                         f"{len(names)} columns."))
                continue
            yield row, {c: values[i].strip() for c, i in index.items()}
    except csv.Error as exc:
        result.errors.append(RowError(None, None, f"The file is not valid CSV after row {row}: {exc}."))


def _chunks(values: Iterable, size: int = _CHUNK) -> Iterator[list]:
    values = list(values)
    for start in range(0, len(values), size):
        yield values[start:start + size]


def _users(usernames: Iterable[str]) -> dict[str, User]:
    found: dict[str, User] = {}
    for chunk in _chunks(sorted(set(usernames))):
        found.update((u.username, u) for u in db.session.scalars(sa.select(User).where(User.username.in_(chunk))))
    return found


def _usernames(user_ids: Iterable[int]) -> dict[int, str]:
    found: dict[int, str] = {}
    for chunk in _chunks(sorted(set(user_ids))):
        found.update(db.session.execute(sa.select(User.id, User.username).where(User.id.in_(chunk))).all())
    return found


def _held(user_ids: Iterable[int]) -> dict[int, list[UserJobFunction]]:
    """Job functions held today or from a later day (not yet ended), by user id."""
    today = now_utc().date()
    held: dict[int, list[UserJobFunction]] = {}
    for chunk in _chunks(sorted(set(user_ids))):
        for row in db.session.scalars(sa.select(UserJobFunction).where(
                UserJobFunction.user_id.in_(chunk),
                sa.or_(UserJobFunction.valid_to.is_(None), UserJobFunction.valid_to > today))):
            held.setdefault(row.user_id, []).append(row)
    return held


def _open_training(user_ids: Iterable[int]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for chunk in _chunks(sorted(set(user_ids))):
        counts.update(db.session.execute(
            sa.select(TrainingAssignment.user_id, sa.func.count()).where(
                TrainingAssignment.user_id.in_(chunk), TrainingAssignment.status == OPEN)
            .group_by(TrainingAssignment.user_id)).all())
    return counts


# --- planning ---------------------------------------------------------------------------------------------------------


class _Org:
    def __init__(self) -> None:
        self.sites = {s.code: s for s in db.session.scalars(sa.select(Site))}
        self.departments = {(d.site_id, d.code): d for d in db.session.scalars(sa.select(Department))}
        self.functions = {f.code: f for f in db.session.scalars(sa.select(JobFunction))}
        self.sites_by_id = {s.id: s for s in self.sites.values()}
        self.departments_by_id = {d.id: d for d in self.departments.values()}
        self.functions_by_id = {f.id: f for f in self.functions.values()}


def _person(row: int, values: dict[str, str], org: _Org, errors: list[RowError]) -> _Person:
    """Check one row against the rules the account and job-function services apply."""
    before = len(errors)

    def error(column: str, rule: str) -> None:
        errors.append(RowError(row, column, rule))

    username = values["username"].lower()
    if not username:
        error("username", "Username is required.")
    elif not accounts.USERNAME_RE.match(username):
        error("username", "Username must be 2-64 characters: lower-case letters, digits, '.', '_' or '-', starting "
                          "with a letter or digit.")
    active = values["active"].lower()
    if active not in TRUE_VALUES | FALSE_VALUES:
        error("active", f"Active must be yes or no (or true/false, 1/0), not {values['active']!r}.")
    person = _Person(row=row, username=username, active=active in TRUE_VALUES)
    if active in FALSE_VALUES:
        # a leaver's row only deactivates: HR data of people who left is often stale and is not checked
        person.ok = len(errors) == before
        return person

    person.full_name, person.email = values["name"], values["email"]
    if len(person.full_name) < 3 or len(person.full_name) > 200:
        error("name", "Full printed name is required, 3 to 200 characters (it appears on every signature).")
    if not accounts.EMAIL_RE.match(person.email) or len(person.email) > 254:
        error("email", "E-mail must be a valid address such as name@example.com.")
    site_code, department_code = values["site"], values["department"]
    if site_code:
        person.site = org.sites.get(site_code)
        if person.site is None:
            error("site", f"There is no site with code {site_code!r}.")
    if department_code:
        if not site_code:
            error("department", "A department needs its site in column site.")
        elif person.site is not None:
            person.department = org.departments.get((person.site.id, department_code))
            if person.department is None:
                error("department", f"Site {site_code} has no department with code {department_code!r}.")
    codes = [c.strip() for c in values["job_functions"].replace("|", ";").split(";") if c.strip()]
    for code in dict.fromkeys(codes):
        function = org.functions.get(code)
        if function is None:
            error("job_functions", f"There is no job function with code {code!r}.")
        else:
            person.functions.append(function)
    person.supervisor = values["supervisor"].lower()
    if person.supervisor and person.supervisor == username:
        error("supervisor", "A person cannot be their own supervisor.")
    person.ok = len(errors) == before
    return person


def _supervisor_error(name: str, in_file: dict[str, _Person], existing: dict[str, User]) -> str | None:
    other = in_file.get(name)
    if other is not None:
        if other.active or not other.ok:
            return None  # an error in the supervisor's own row is reported there
        return f"Supervisor {name} is deactivated by row {other.row}."
    if name not in existing:
        return f"There is no person {name!r} in Attest or in this file."
    if not existing[name].active:
        return f"Supervisor {name} is deactivated."
    return None


def _check_references(person: _Person, existing: dict[str, User], held: dict[int, list[UserJobFunction]],
                      in_file: dict[str, _Person], errors: list[RowError]) -> bool:
    """The checks of an active row that need the database: the account, job functions in use, the supervisor."""
    before = len(errors)
    user = existing.get(person.username)
    if user is not None and not user.active:
        errors.append(RowError(person.row, "active", f"{user.username} is a deactivated account; the import does "
                                                     f"not restore access: an administrator reactivates accounts on "
                                                     f"the Users page."))
    held_ids = {h.job_function_id for h in held.get(user.id, [])} if user is not None else set()
    for function in person.functions:
        if not function.active and function.id not in held_ids:
            errors.append(RowError(person.row, "job_functions", f"Job function {function.code} is no longer in use."))
    rule = _supervisor_error(person.supervisor, in_file, existing) if person.supervisor else None
    if rule:
        errors.append(RowError(person.row, "supervisor", rule))
    return len(errors) == before


def _label(obj: Site | Department | None) -> str:
    return obj.code if obj is not None else ""


def _update(person: _Person, held: list[UserJobFunction], org: _Org, usernames: dict[int, str]) -> Update | None:
    user = person.user
    pairs = [("name", user.full_name, person.full_name), ("email", user.email, person.email),
             ("site", _label(org.sites_by_id.get(user.site_id)), _label(person.site)),
             ("department", _label(org.departments_by_id.get(user.department_id)), _label(person.department)),
             ("supervisor", usernames.get(user.supervisor_id, ""), person.supervisor)]
    changes = tuple(FieldChange(column, old, new) for column, old, new in pairs if old != new)
    today = now_utc().date()
    held_ids = {h.job_function_id for h in held}
    wanted = {f.id for f in person.functions}
    grant = [f for f in person.functions if f.id not in held_ids]
    # a job function granted from a later day, or already ending on a later day, is left as the coordinator set it
    end = [h for h in held if h.job_function_id not in wanted and h.valid_to is None and h.valid_from <= today]
    if not (changes or grant or end):
        return None
    return Update(row=person.row, username=person.username, changes=changes, added=tuple(f.code for f in grant),
                  ended=tuple(sorted(org.functions_by_id[h.job_function_id].code for h in end)), person=person,
                  grant_ids=tuple(f.id for f in grant), end_rows=tuple(end))


def plan(data: str | bytes, *, actor: User | None = None) -> ImportPlan:
    """The dry run: what importing `data` (CSV text, or bytes in UTF-8) would change now. Writes nothing."""
    result = ImportPlan()
    text, error = read_text(data)
    if error is not None:
        result.errors.append(error)
        return result
    result.text_sha256 = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    org = _Org()
    people: list[_Person] = []
    first_row: dict[str, int] = {}
    for row, values in _records(text, result):
        person = _person(row, values, org, result.errors)
        if person.username in first_row:
            result.errors.append(RowError(row, "username", f"{person.username} appears again (first in row "
                                                           f"{first_row[person.username]})."))
            continue
        if person.username:
            first_row[person.username] = row
            people.append(person)
    if any(e.row is None for e in result.errors):
        return result  # a file-level error: the rows read so far say nothing reliable

    existing = _users([p.username for p in people] + [p.supervisor for p in people if p.supervisor])
    in_file = {p.username: p for p in people}
    active_ids = [u.id for u in existing.values() if u.active]
    held = _held(active_ids)
    open_training = _open_training([existing[p.username].id for p in people
                                    if not p.active and p.username in existing])
    usernames = _usernames(u.supervisor_id for u in existing.values() if u.supervisor_id)
    for person in people:
        user = person.user = existing.get(person.username)
        if not person.active:
            if not person.ok:
                continue
            if user is None or not user.active:
                result.unchanged += 1  # never had an account here, or already deactivated
            elif actor is not None and actor.id == user.id:
                result.errors.append(RowError(person.row, "active", "You cannot deactivate your own account."))
            elif _privileged(user, actor):
                result.errors.append(RowError(person.row, "active", _privileged(user, actor)))
            else:
                result.deactivations.append(Deactivation(person.row, user.username, user.full_name,
                                                         open_training.get(user.id, 0), user=user))
            continue
        if not _check_references(person, existing, held, in_file, result.errors) or not person.ok:
            continue
        if user is None:
            result.creations.append(Creation(
                person.row, person.username, person.full_name, person.email, _label(person.site),
                _label(person.department), person.supervisor, tuple(f.code for f in person.functions),
                person=person))
            continue
        update = _update(person, held.get(user.id, []), org, usernames)
        if update is None:
            result.unchanged += 1
        elif _privileged(user, actor):
            result.errors.append(RowError(person.row, "username", _privileged(user, actor)))
        else:
            result.updates.append(update)
    result.errors.sort(key=lambda e: (e.row or 0, COLUMNS.index(e.column) if e.column in COLUMNS else -1))
    return result


# roles whose accounts HR data may change; any other role (QA approver, administrator, author...) is changed only by
# an administrator on the Users page, so that a training coordinator cannot lock out or rename those who sign
HR_MANAGED_ROLES = frozenset({"operator", "supervisor"})


def _privileged(user: User, actor: User | None) -> str | None:
    """Why `actor` may not change `user` through an import (None: they may)."""
    if actor is None or actor.can("users.manage"):
        return None
    other = sorted(user.role_codes - HR_MANAGED_ROLES)
    if not other:
        return None
    return (f"{user.username} holds the role(s) {', '.join(other)}: only an administrator changes this account "
            f"(Users page); leave the row out or ask an administrator.")


# --- applying ---------------------------------------------------------------------------------------------------------


def apply(data: str | bytes, *, actor: User | None, expected_fingerprint: str | None = None,
          progress: Callable[[int], None] | None = None) -> ImportPlan:
    """Plan again and carry the plan out in the caller's transaction (which must carry a reason for change).

    Refuses a file with any error (nothing is written) and, given `expected_fingerprint`, a plan that differs from
    the dry run the user reviewed. `progress(n)` is told of each person done. Returns the plan carried out."""
    if actor is not None and not actor.can("training.manage"):
        raise NotPermitted("Importing people from HR needs the permission 'training.manage'.")
    result = plan(data, actor=actor)
    if result.errors:
        raise ValidationError("file", f"The file has {len(result.errors)} error(s); nothing was imported. Correct "
                                      f"them and check the file again.")
    if expected_fingerprint is not None and expected_fingerprint != result.fingerprint:
        raise PlanChanged("This is not what the check showed: the file differs, or people or the organisation "
                          "changed meanwhile. Review the new check and apply again.")
    if not result.changes:
        return result
    if not db.session.info.get("audit_reason"):
        raise ValidationError("reason", "A reason for change is required to import people.")
    step = progress or (lambda n: None)
    new = {c.username for c in result.creations}
    created: dict[str, User] = {}
    later: list[_Person] = []  # their supervisor is created further down the file
    for creation in result.creations:
        p = creation.person
        deferred = p.supervisor in new and p.supervisor not in created
        if deferred:
            later.append(p)
        p.user, _ = accounts.create_user(
            username=p.username, full_name=p.full_name, email=p.email, roles={IMPORTED_ROLE},
            site_id=p.site.id if p.site else None, department_id=p.department.id if p.department else None,
            supervisor_id=None if deferred else _user_id(p.supervisor, created), password_hash=NO_PASSWORD,
            must_change_password=True, actor=None)  # no access until an administrator acts: see the docstring
        created[p.username] = p.user
        for function in p.functions:
            services.grant_job_function(p.user, function.id, actor=actor, source_type=SOURCE_IMPORT)
        step(1)
    for p in later:
        _set_profile(p, created)
    for update in result.updates:
        p = update.person
        if update.changes:
            _set_profile(p, created)
        for function_id in update.grant_ids:  # before ending: training the new function also requires stays open
            services.grant_job_function(p.user, function_id, actor=actor, source_type=SOURCE_IMPORT)
        for held in update.end_rows:
            services.end_job_function(held, actor=actor)
        step(1)
    for deactivation in result.deactivations:
        services.deactivate_person(deactivation.user, actor=actor)  # and their open training is cancelled
        step(1)
    return result


def _user_id(username: str, created: dict[str, User]) -> int | None:
    if not username:
        return None
    user = created.get(username) or accounts.get_by_username(username)
    return user.id if user is not None else None


def _set_profile(person: _Person, created: dict[str, User]) -> None:
    user = person.user
    accounts.update_profile(user, full_name=person.full_name, email=person.email,
                            site_id=person.site.id if person.site else None,
                            department_id=person.department.id if person.department else None,
                            supervisor_id=_user_id(person.supervisor, created), timezone=user.timezone)
