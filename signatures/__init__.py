"""Electronic signatures: the signing step and view (ceremony), signature records, manifestation, manifest XML, and
the declared record lifecycles (signatures.lifecycle)."""

from __future__ import annotations

EVENTS = {"signature.failure": "Signature authentication failed"}


def load_models() -> None:
    import signatures.models  # noqa: F401


def init_app(app) -> None:
    """The signing page's templates (no routes of its own), `flask signatures ...`, the signature failure event."""
    from core import audit
    from signatures import ceremony, cli

    audit.register_events(EVENTS, position=20)
    app.register_blueprint(ceremony.bp)
    app.cli.add_command(cli.signatures_cli)
