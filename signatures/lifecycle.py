"""Record lifecycles declared once, as data, and the one place a declared transition is applied.

A record type (a document revision, a change control, a validation run, ...) declares its `Lifecycle`: its states
and, for each `Transition`, the action, the states it starts from, the next state, the permission, the signature
meaning (None for an unsigned step), what the person writes (nothing, a comment, a required comment or a required
justification), the segregation-of-duties rules, the extra form fields, and the domain's effect. From that one
declaration come:

- the check (`Lifecycle.check`): permission, then state, then the rules, then the version the page showed;
- the buttons of the record page (`Lifecycle.available`) and the signing page's form (`signatures.ceremony`);
- the state diagram in the documentation (`Lifecycle.mermaid`, written by `flask signatures lifecycles`);
- `Lifecycle.apply`, the only place where a declared transition sets the record's status: it locks the row, checks,
  signs (`signatures.services.sign`) when a meaning is declared, moves the status and runs the domain's effect, all
  inside the caller's unit of work (it flushes, never commits).

The record whose state changes may differ from the record that is signed and from the row that carries the version
a page showed: a CAPA action's steps are signed on its CAPA, read-and-sign moves a training assignment and signs the
document revision. `signed`, `locks` and `fresh_against` say which rows play each part (default: the record itself).

Nothing here imports a higher package: domains pass their models, labels and callables in.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from core.auth.models import User
from core.auth.permissions import PERMISSIONS
from core.clock import now_utc
from core.db import db, default_reason, lock_row
from core.errors import AttestError, InvalidTransition, NotPermitted, ValidationError

UNCHANGED = "unchanged"  # the next state of a step that does not move the record (e.g. one of several reviewers)

NO_TEXT, COMMENT, REQUIRED_COMMENT, JUSTIFICATION = "none", "comment", "required comment", "justification"

LIFECYCLES: dict[str, Lifecycle] = {}


def require(actor: User | None, permission: str | Sequence[str], task: str) -> None:
    """Refuse an inactive or missing actor, or one whose roles grant none of `permission`, naming the permission so
    the person knows what to ask for."""
    wanted = (permission,) if isinstance(permission, str) else tuple(permission)
    if actor is not None and actor.active and any(actor.can(p) for p in wanted):
        return
    named = " or ".join(f"“{PERMISSIONS[p].label}” ({p})" for p in wanted)
    raise NotPermitted(f"{task} needs the permission {named}, which your roles do not grant.")


def _call(value: Any, *args: Any) -> Any:
    return value(*args) if callable(value) else value


@dataclass(frozen=True)
class Text:
    """What the person writes with a transition: nothing, an optional comment, a required comment or a required
    justification. `field` is the form field (and the field a refusal names), `what` names the text in a refusal
    ("{what} is required.", or `missing` when the service says more than the form), `label` and `help` are shown on
    the form (`help` may take the record)."""

    kind: str = NO_TEXT
    field: str = ""
    label: str = ""
    what: str = ""
    limit: int = 2000
    min_length: int = 0
    help: str | Callable[[Any], str | None] | None = None
    missing: str | None = None

    @property
    def required(self) -> bool:
        return self.kind in (REQUIRED_COMMENT, JUSTIFICATION)

    def clean(self, value: str | None) -> str | None:
        """The stripped text; blank is None unless required, over-long is refused (never stored cut)."""
        if self.kind == NO_TEXT:
            return None
        value = (value or "").strip()
        if not value:
            if self.required:
                raise ValidationError(self.field, self.missing or f"{self.what} is required.")
            return None
        if len(value) > self.limit:
            raise ValidationError(self.field, f"{self.what} must be at most {self.limit:,} characters.")
        return value

    def describe(self) -> str:
        return {NO_TEXT: "", COMMENT: "optional comment",
                REQUIRED_COMMENT: f"required comment ({self.limit:,} characters)",
                JUSTIFICATION: f"required justification ({self.limit:,} characters)"}[self.kind]


NOTHING = Text()


def comment(*, help: str | Callable[[Any], str | None] | None = None) -> Text:
    return Text(COMMENT, "comment", "Comment", "Comment", 2000, 0, help)


def required_comment(what: str, *, limit: int = 2000, help: str | Callable[[Any], str | None] | None = None) -> Text:
    return Text(REQUIRED_COMMENT, "comment", "Comment", what, limit, 0, help)


def justification(label: str, *, what: str, limit: int = 2000, min_length: int = 0, field: str = "reason",
                  help: str | Callable[[Any], str | None] | None = None, missing: str | None = None) -> Text:
    return Text(JUSTIFICATION, field, label, what, limit, min_length, help, missing)


@dataclass(frozen=True)
class Rule:
    """A named rule on who may act on this record (segregation of duties, the owner only, ...), or a precondition on
    a related record: `holds(record, user)`; when it does not, `refusal(record, user)` says why, raised as `error`."""

    name: str
    holds: Callable[[Any, User], bool]
    refusal: Callable[[Any, User], str]
    error: type[AttestError] = NotPermitted


DATE, LONG_TEXT, YES_NO = "date", "text", "yes/no"


def only(attribute: str, name: str, refusal: Callable[[Any], str]) -> Rule:
    """Only the person the record names in `attribute` (its owner, author, executor) may take the step."""
    return Rule(name, lambda record, user: user.id == getattr(record, attribute),
                lambda record, _user: refusal(record))


def never(attribute: str, name: str, refusal: Callable[[Any], str]) -> Rule:
    """Segregation of duties: the person the record names in `attribute` may never take the step."""
    return Rule(name, lambda record, user: user.id != getattr(record, attribute),
                lambda record, _user: refusal(record))


@dataclass(frozen=True)
class FormField:
    """An extra field of the transition's form (e.g. the effective date of an approval): a date, a long text or a
    yes/no choice ("yes" or "no"), optional or `required` (the message when it is missing). Its value reaches the
    check and the effect as `act.values[name]`; `help` may take the record."""

    name: str
    label: str
    kind: str = LONG_TEXT
    required: str | None = None
    limit: int = 4000
    help: str | Callable[[Any], str | None] | None = None


@dataclass
class Act:
    """One application of a transition: what the check, the effect and the view's message see."""

    lifecycle: Lifecycle
    transition: Transition
    record: Any
    signed: Any
    actor: User | None
    text: str | None = None
    values: dict[str, Any] = field(default_factory=dict)
    previous: str = ""
    moved: bool = False
    signature: Any = None
    result: Any = None
    data: dict[str, Any] = field(default_factory=dict)  # what the check found, for the effect
    at: datetime = field(default_factory=now_utc)


@dataclass(frozen=True)
class Transition:
    """One action on a record. Callables take the `Act` (check, effect, after, moves, signature_comment,
    audit_reason, done) or the record (offered)."""

    action: str  # the slug: URL part and name (e.g. "close-override")
    label: str  # the record page's button
    source: tuple[str, ...]
    next: str  # a state, or UNCHANGED
    permission: str | tuple[str, ...]  # one permission, or any of several
    meaning: str | None = None  # the signature's meaning; None: an unsigned step
    text: Text = NOTHING
    rules: tuple[Rule, ...] = ()
    task: str = ""  # names the act in a permission refusal: "Approving a change control"
    verb: str = ""  # names it in a state refusal: "Cannot {verb} {record}: ..."
    confirm: str = ""  # the form's submit button: "Sign and approve"
    style: str = "primary"  # the buttons' Bootstrap style: primary, success, warning, danger, secondary
    fields: tuple[FormField, ...] = ()
    page: bool | None = None  # a page of its own (GET + POST); default: signed steps and steps that take text
    path: str | None = None  # URL part after the record's rule (default: the action)
    endpoint: str | None = None  # default: sign_<action> for signed steps, <action> for others
    offered: Callable[[Any], bool] | None = None  # the button is shown only when this holds (not a refusal)
    check: Callable[[Act], None] | None = None  # domain preconditions, read-only; may leave findings in act.data
    effect: Callable[[Act], None] | None = None  # the record's own fields, set with the status, in one flush
    after: Callable[[Act], Any] | None = None  # calls into other records or packages once the record is written
    moves: Callable[[Act], bool] | None = None  # the status moves only when this holds (e.g. the last approver)
    moves_when: str = ""  # says when it moves (or what else may happen), for the documentation
    binds_result: bool = False  # the signature binds the record as the step leaves it, not as the signer saw it
    # a new signing round: earlier signatures with this meaning on this version count only from this moment (e.g. a
    # periodic review, or a read-and-sign assignment's creation); default: every earlier signature counts
    since: Callable[[Act], datetime | None] | None = None
    signature_comment: Callable[[Act], str | None] | None = None  # default: the text
    audit_reason: str | Callable[[Act], str] = ""  # the audit trail's reason unless the person gave one
    done: str | Callable[[Act], str] | None = None  # the message once done (signed default: the lifecycle's)
    state_refusal: str | None = None  # overrides the lifecycle's; {title} {status} {status_lower} {allowed} {verb}
    needs_version: bool | None = None  # must a version be given? (default: the lifecycle's; False: checked if given)
    system_may: bool = False  # the command line may take the step too (actor None: no permission or rule applies)

    @property
    def signed(self) -> bool:
        return self.meaning is not None

    @property
    def own_page(self) -> bool:
        return self.page if self.page is not None else (self.signed or self.text.kind != NO_TEXT)

    @property
    def url_part(self) -> str:
        return self.path if self.path is not None else self.action

    @property
    def endpoint_name(self) -> str:
        if self.endpoint:
            return self.endpoint
        return ("sign_" if self.signed else "") + self.action.replace("-", "_")

    @property
    def permissions(self) -> tuple[str, ...]:
        return (self.permission,) if isinstance(self.permission, str) else tuple(self.permission)

    @property
    def submit_label(self) -> str:
        return self.confirm or self.label.rstrip("…").strip()


@dataclass(frozen=True)
class SystemTransition:
    """A move made by the system, not through a page (a scheduled release, the protocol runner): documented in the
    diagram, applied by its own job."""

    source: tuple[str, ...]
    next: str
    label: str


def _title(record: Any) -> str:
    return record.audit_title()


class Lifecycle:
    """The lifecycle of one record type. See the module docstring."""

    def __init__(self, name: str, *, title: str, model: type, noun: str, labels: dict[str, str], initial: str,
                 transitions: Iterable[Transition], system: Iterable[SystemTransition] = (), status: str = "status",
                 signed: Callable[[Any], Any] | None = None, locks: Callable[[Any], Sequence[Any]] | None = None,
                 fresh_against: Callable[[Any], Any] | None = None, require_version: bool = True,
                 stale: str = "{title} changed since the page was loaded; reload it and check it again.",
                 state_refusal: str = "Cannot {verb} {title}: it is {status}; only a {noun} in {allowed} can be.",
                 signed_done: str = "Signed: {meaning}. {title} is now {status}.",
                 summary: Callable[[Any], str] | None = None, describe: str = "", register: bool = True):
        self.name, self.title, self.model, self.noun = name, title, model, noun
        self.labels, self.initial, self.status = dict(labels), initial, status
        self.transitions: dict[str, Transition] = {}
        for t in transitions:
            if t.action in self.transitions:
                raise ValueError(f"{name}: transition {t.action} is declared twice")
            self.transitions[t.action] = t
        self.system = tuple(system)
        self.signed_record = signed or (lambda record: record)
        self.signs_itself = signed is None
        self.locks = locks or (lambda record: (record,))
        self.fresh_against = fresh_against or (lambda record: record)
        self.require_version = require_version
        self.stale, self.state_refusal, self.signed_done = stale, state_refusal, signed_done
        self.summary = summary or (lambda record: f"{_title(record)} — {getattr(record, 'title', '')} "
                                                  f"({self.status_label(record)})")
        self.describe = describe
        if register:  # the registry documents every record type (docs/lifecycles.md); a test may declare its own
            if name in LIFECYCLES and LIFECYCLES[name].model is not model:
                raise ValueError(f"a lifecycle named {name} is already declared")
            LIFECYCLES[name] = self

    # --- reading ------------------------------------------------------------------------------------------------------

    def __getitem__(self, action: str) -> Transition:
        return self.transitions[action]

    def state_of(self, record: Any) -> str:
        return getattr(record, self.status)

    def status_label(self, record: Any) -> str:
        state = self.state_of(record)
        return self.labels.get(state, state)

    def version_of(self, record: Any) -> str:
        """The version a page shows and sends back (the row version of the row that carries it)."""
        return str(self.fresh_against(record).row_version)

    def available(self, record: Any, user: Any) -> list[Transition]:
        """The transitions `user` may take on `record` now (permission, state, rules, and when the step is offered):
        the buttons of the record page. Domain preconditions are not evaluated: the step refuses with its reason."""
        if user is None or not getattr(user, "is_authenticated", False) or not user.active:
            return []
        state = self.state_of(record)
        return [t for t in self.transitions.values()
                if state in t.source and any(user.can(p) for p in t.permissions)
                and all(rule.holds(record, user) for rule in t.rules) and (t.offered is None or t.offered(record))]

    # --- the check ----------------------------------------------------------------------------------------------------

    def check(self, record: Any, action: str, actor: User | None, expected_version: Any = None, *,
              fresh: bool = True) -> Transition:
        """Refuse `action` on `record` by `actor`: permission, then state, then the rules, then the version the page
        showed. The messages name what is missing (the permission, the states allowed, the rule)."""
        t = self.transitions[action]
        by_system = actor is None and t.system_may
        if not by_system:
            require(actor, t.permission, t.task or f"{t.label.rstrip('…')} ({self.noun})")
        state = self.state_of(record)
        if state not in t.source:
            template = t.state_refusal or self.state_refusal
            allowed = " or ".join(self.labels[s] for s in t.source)
            raise InvalidTransition(template.format(
                title=_title(record), status=self.status_label(record), status_lower=self.status_label(record).lower(),
                allowed=allowed, allowed_lower=allowed.lower(), noun=self.noun, verb=t.verb or t.action))
        for rule in () if by_system else t.rules:
            if not rule.holds(record, actor):
                raise rule.error(rule.refusal(record, actor))
        if fresh:
            if t.needs_version is False and not str(expected_version or "").strip():
                return t  # a step taken without a page's version (e.g. recording an action done)
            self.check_fresh(record, expected_version,
                             required=self.require_version if t.needs_version is None else t.needs_version)
        return t

    def check_fresh(self, record: Any, expected_version: Any, *, required: bool | None = None) -> None:
        """Refuse an action taken on a page that showed an older version: the person must see what they act on.
        Without a version (a service call that saw none) the step is refused unless the version is optional; a page
        always sends one, so an empty one is refused as stale."""
        if expected_version is None and not (self.require_version if required is None else required):
            return
        holder = self.fresh_against(record)
        if expected_version is None or str(expected_version).strip() != str(holder.row_version):
            raise InvalidTransition(self.stale.format(title=_title(holder)))

    # --- applying -----------------------------------------------------------------------------------------------------

    def apply(self, record: Any, action: str, *, actor: User | None, proof: Any = None,
              expected_version: Any = None, text: str | None = None, values: dict[str, Any] | None = None) -> Act:
        """Apply `action` to `record` inside the caller's unit of work: lock, check, sign when a meaning is declared,
        move the status, run the effect; everything or nothing (the caller's transaction rolls back on a refusal).

        `proof` is the signer's `SignerProof` (signed steps), `text` the comment or justification, `values` the
        extra fields; `actor` is None only for a step the command line may take (`system_may`). The effect runs with
        autoflush off, so the record's row is written once (the append-only version tables refuse a second write of
        one row in one transaction)."""
        from signatures import services as signing

        t = self.transitions[action]
        for row in self.locks(record):
            lock_row(row)
        self.check(record, action, actor, expected_version)
        act = Act(self, t, record, self.signed_record(record), actor, values=dict(values or {}),
                  previous=self.state_of(record))
        act.text = t.text.clean(text)
        if t.check is not None:
            t.check(act)
        reason = _call(t.audit_reason, act)
        if reason:
            default_reason(reason)
        if t.signed and proof is None:
            raise NotPermitted(f"{t.label.rstrip('…')} needs your electronic signature.")

        def sign(expected: Any) -> Any:
            comment = t.signature_comment(act) if t.signature_comment is not None else act.text
            return signing.sign(act.signed, signer=actor, proof=proof, meaning=t.meaning, comment=comment,
                                expected_version=expected, allowed=(t.meaning,),
                                since=t.since(act) if t.since is not None else None)

        if t.signed and not t.binds_result:
            act.signature = sign(str(expected_version).strip() or None if expected_version is not None else None)
        act.moved = t.next != UNCHANGED and (t.moves is None or t.moves(act))
        with db.session.no_autoflush:
            if act.moved:
                setattr(record, self.status, t.next)
            if t.effect is not None:
                t.effect(act)
        db.session.flush()
        if t.signed and t.binds_result:
            db.session.refresh(act.signed)
            act.signature = sign(None)
        if t.after is not None:
            act.result = t.after(act)
        db.session.flush()
        return act

    def move(self, record: Any, state: str) -> None:
        """A move the system makes (a scheduled release, the protocol runner): only along a declared system
        transition, the one place such a move sets the status. The caller (a job, with its own locks and checks)
        writes the row with its other changes, in its unit of work."""
        current = self.state_of(record)
        if not any(current in s.source and s.next == state for s in self.system):
            raise InvalidTransition(f"{_title(record)} cannot move from {self.labels.get(current, current)} to "
                                    f"{self.labels.get(state, state)}: no declared system move.")
        setattr(record, self.status, state)

    def move_all(self, where: Any, state: str, values: dict[str, Any]) -> int:
        """The same for many records at once, written in bulk with their audit rows (core.bulk): every record
        `where` selects moves to `state` with `values` (e.g. the reason it was closed). The states the declared
        system moves to `state` start from are required of the records. Returns how many moved."""
        from core import bulk

        sources = sorted({source for s in self.system if s.next == state for source in s.source})
        if not sources:
            raise InvalidTransition(f"No declared system move of a {self.noun} to {self.labels.get(state, state)}.")
        column = getattr(self.model, self.status)
        return bulk.bulk_update(self.model, sa.and_(where, column.in_(sources)), {**values, self.status: state})

    def cascade(self, record: Any, state: str) -> None:
        """Move a dependent record along with its parent's signed step (e.g. a CAPA's actions when QA approves the
        plan or cancels the CAPA): only along a declared transition, with no check of its own (the parent's step
        was checked and signed). The caller writes the row once, with its other changes."""
        current = self.state_of(record)
        if not any(current in t.source and t.next == state for t in self.transitions.values()):
            raise InvalidTransition(f"{_title(record)} cannot move from {self.labels.get(current, current)} to "
                                    f"{self.labels.get(state, state)}.")
        setattr(record, self.status, state)

    def done_message(self, act: Act) -> str:
        """What the page says once the step is done: the transition's own message, else the signed default."""
        return _call(act.transition.done, act) if act.transition.done is not None else self.signed_message(act)

    def signed_message(self, act: Act) -> str:
        signed = act.signed
        status = signed.status_label if hasattr(signed, "status_label") else self.status_label(signed)
        return self.signed_done.format(meaning=act.transition.meaning, title=_title(signed), status=status)

    # --- the documentation --------------------------------------------------------------------------------------------

    def states(self) -> list[str]:
        return list(self.labels)

    def mermaid(self) -> str:
        """The state diagram (Mermaid), every declared transition and the system's moves (dashed in the table)."""
        lines = ["stateDiagram-v2"]
        for state, label in self.labels.items():
            lines.append(f'    state "{label}" as {state}')
        lines.append(f"    [*] --> {self.initial}")
        for t in self.transitions.values():
            for source in t.source:
                target = source if t.next == UNCHANGED else t.next
                how = f"signed {t.meaning}" if t.signed else "unsigned"
                lines.append(f"    {source} --> {target}: {t.action} ({how})")
        for s in self.system:
            for source in s.source:
                lines.append(f"    {source} --> {s.next}: {s.label} (system)")
        return "\n".join(lines)

    def table(self) -> list[list[str]]:
        """One row per transition: action, button, from, to, who, signature, text, rules; then the system's moves."""
        rows = []
        for t in self.transitions.values():
            to = "unchanged" if t.next == UNCHANGED else self.labels[t.next]
            to = f"{to} ({t.moves_when})" if t.moves_when else to
            who = " or ".join(t.permissions) + (" (or the command line)" if t.system_may else "")
            rows.append([f"`{t.action}`", t.label.rstrip("…"), ", ".join(self.labels[s] for s in t.source), to,
                         who, t.meaning or "unsigned", t.text.describe() or "—",
                         "; ".join(r.name for r in t.rules) or "—"])
        for s in self.system:
            rows.append(["—", s.label, ", ".join(self.labels[x] for x in s.source), self.labels[s.next],
                         "the system", "—", "—", "—"])
        return rows


def markdown(lifecycles: Iterable[Lifecycle] | None = None) -> str:
    """docs/lifecycles.md: a diagram and a table per record type, generated from the declarations."""
    chosen = sorted(lifecycles if lifecycles is not None else LIFECYCLES.values(), key=lambda lc: lc.title)
    out = ["# Record lifecycles", "",
           "Generated from the declarations (`signatures/lifecycle.py`, each record type's `LIFECYCLE`) by "
           "`flask signatures lifecycles --write docs/lifecycles.md`; a test fails when this file is out of date. "
           "The same declaration gives the services their checks (permission, then state, then the rules, then "
           "the version the page showed), the record pages their buttons and the signing pages their forms.", ""]
    for lc in chosen:
        out += [f"## {lc.title}", ""]
        if lc.describe:
            out += [inspect.cleandoc(lc.describe), ""]
        out += ["```mermaid", lc.mermaid(), "```", "",
                "| Action | Button | From | To | Permission | Signature | Text | Rules |",
                "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        out += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in lc.table()]
        out.append("")
    return "\n".join(out)
