"""The canaries run only through the protocol runner (`flask validation run CANARY`); `make test` does not collect
this folder (see tests/integration/test_validation_runner.py for the tests that run them)."""

pytest_plugins = ["validation.bdd"]


def pytest_configure(config):
    config.addinivalue_line("markers", "canary: deliberately failing runner canary")
