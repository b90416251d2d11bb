pytest_plugins = ["core.testing.plugin"]
