"""Demo validation data, loaded last by `flask demo load`: QA (`qa.approver`) has approved the shipped protocol
files and each protocol's step code (demo signatures), so the demo validation engineer (`validation`) can start an
IQ, OQ, PQ or canary run at once. Skipped when any protocol version exists."""

from __future__ import annotations

import click
import sqlalchemy as sa

from core.auth.models import User
from core.clock import now_utc
from core.db import db, transaction
from signatures.services import SignerProof
from validation import services
from validation.models import ProtocolVersion


def load(**_options) -> None:
    with transaction():
        if db.session.scalar(sa.select(sa.func.count()).select_from(ProtocolVersion)):
            click.echo("demo validation skipped: protocol versions exist")
            return
        qa = db.session.scalar(sa.select(User).where(User.username == "qa.approver"))
        if qa is None:
            click.echo("demo validation skipped: no demo QA approver")
            return
        paths = [f.path for f in services.protocol_files()]
        versions = services.approve_files(paths, actor=qa, proof=SignerProof(qa.id, "demo-data", now_utc()),
                                          reason=None, comment="Demo: protocol approved for execution")
    click.echo(f"demo validation ready: {len(versions)} protocol files and step code approved by {qa.full_name}")
