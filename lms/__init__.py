"""Learning management: courses, content items, quizzes, SCORM/xAPI (built in later issues)."""

from __future__ import annotations


def load_models() -> None:
    """No models yet."""


def init_app(app) -> None:
    """Nothing to register yet: courses will add their pages, permissions and demo here (docs/architecture.md)."""
