"""A person leaving and coming back, through the Users page and the command line: one transaction deactivates the
account (sessions end, API tokens revoked) and cancels the person's open training; reactivating assigns again what
their job functions require. The buttons are training's, shown among core's on the user page."""

from __future__ import annotations

import json

import sqlalchemy as sa

from core.audit import AuditTransaction
from core.auth import tokens
from core.auth.models import User
from core.db import db, transaction
from core.testing.pages import alerts, events
from features.support.documents import approved_revision, hold, new_document
from testkit.plugin import post_form
from tests.web.test_read_and_sign import client_for, text_of
from training.models import OPEN, TrainingAssignment

REASON = "Left the company on 28 February"


def _training(user) -> list[tuple[int, str, str | None]]:
    db.session.expire_all()
    return [(a.cycle, a.status, a.closed_reason) for a in db.session.scalars(
        sa.select(TrainingAssignment).where(TrainingAssignment.user_id == user.id).order_by(TrainingAssignment.id))]


def _leaver_with_training_and_a_token(p):
    hold([p.operator], p.job_function_id)
    approved_revision(p, new_document(p))
    with transaction():
        token, _secret = tokens.create(p.operator, name="MES line 4 qualification check")
    assert _training(p.operator) == [(0, OPEN, None)]
    return token


def test_deactivating_a_person_on_the_users_page_cancels_their_training_and_revokes_their_tokens(app, p, admin):
    token = _leaver_with_training_and_a_token(p)
    admin_c = client_for(app, admin)
    page = admin_c.get(f"/admin/users/{p.operator.id}")
    assert f'action="/admin/users/{p.operator.id}/deactivate"' in page.get_data(as_text=True)
    assert f'/admin/users/{p.operator.id}/reactivate"' not in page.get_data(as_text=True)

    response = post_form(admin_c, f"/admin/users/{p.operator.id}/deactivate", {"reason": REASON},
                         token_from=f"/admin/users/{p.operator.id}")
    assert response.status_code == 302
    assert alerts(admin_c.get(response.headers["Location"])) == ["otto.operator was deactivated; their sessions ended."]
    assert db.session.get(User, p.operator.id).active is False
    assert _training(p.operator) == [(0, "cancelled", "Account deactivated")]
    db.session.expire_all()
    assert db.session.get(tokens.ApiToken, token.id).state == "Revoked"
    [deactivated] = events("user.deactivated", p.operator)
    [revoked] = events("api_token.revoked", p.operator)
    assert json.loads(revoked.detail)["because"] == "account deactivated"
    # one transaction, with the reason: the account, the revoked token and the cancelled training together
    assert deactivated.transaction_id == revoked.transaction_id
    assert db.session.get(AuditTransaction, deactivated.transaction_id).reason == REASON
    assert "training_assignment" in db.session.get(AuditTransaction, deactivated.transaction_id).record_types


def test_reactivating_a_person_on_the_users_page_assigns_their_training_again(app, p, admin):
    token = _leaver_with_training_and_a_token(p)
    admin_c = client_for(app, admin)
    user_page = f"/admin/users/{p.operator.id}"
    post_form(admin_c, f"{user_page}/deactivate", {"reason": REASON}, token_from=user_page)
    page = admin_c.get(user_page).get_data(as_text=True)
    assert f'action="{user_page}/reactivate"' in page and f'action="{user_page}/deactivate"' not in page

    response = post_form(admin_c, f"{user_page}/reactivate", {"reason": "Rehired"}, token_from=user_page)
    assert response.status_code == 302
    assert alerts(admin_c.get(user_page)) == ["otto.operator was reactivated."]
    assert db.session.get(User, p.operator.id).active is True
    assert _training(p.operator) == [(0, "cancelled", "Account deactivated"), (1, OPEN, None)]
    assert db.session.get(tokens.ApiToken, token.id).state == "Revoked"  # a reactivation brings no token back
    assert len(events("user.reactivated", p.operator)) == 1
    assert app.test_cli_runner().invoke(args=["audit", "verify"]).exit_code == 0


def test_a_deactivation_without_a_reason_changes_nothing(app, p, admin):
    _leaver_with_training_and_a_token(p)
    admin_c = client_for(app, admin)
    user_page = f"/admin/users/{p.operator.id}"
    post_form(admin_c, f"{user_page}/deactivate", {"reason": ""}, token_from=user_page)
    assert db.session.get(User, p.operator.id).active is True
    assert _training(p.operator) == [(0, OPEN, None)]
    assert events("user.deactivated") == []


def test_the_command_line_deactivation_cancels_open_training_too(app, p):
    _leaver_with_training_and_a_token(p)
    result = app.test_cli_runner().invoke(args=["users", "deactivate", "otto.operator", "--reason", REASON])
    assert result.exit_code == 0, result.output
    assert "deactivated otto.operator" in result.output
    assert _training(p.operator) == [(0, "cancelled", "Account deactivated")]
    assert events("api_token.revoked", p.operator) != []


def test_the_user_page_links_to_the_persons_job_functions_for_who_follows_training(app, p, admin):
    user_page = f"/admin/users/{p.operator.id}"
    follower = client_for(app, p.qa).get(user_page)  # users.view and training.view_team
    assert "Held now and in the past" in text_of(follower)
    assert f'href="/training/people/{p.operator.username}"' in follower.get_data(as_text=True)
    assert "Held now and in the past" not in text_of(client_for(app, admin).get(user_page))  # accounts only
