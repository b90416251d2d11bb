import pytest

pytest_plugins = ["testkit.plugin"]


@pytest.fixture
def p(make_user):
    """The document-control organisation and one person per part (features/support/documents.py); a module
    may define its own `p` on top of it."""
    from features.support.documents import setup_people

    return setup_people(make_user)


@pytest.fixture
def coordinator(make_user):
    """A training coordinator (training.manage)."""
    return make_user("cora.coord", roles={"training_coordinator"}, full_name="Cora Coordinator")
