"""The test harness that assembles the application (`testkit.plugin`, a pytest plugin): an app on a freshly migrated
database per test, clients with CSRF, users per role. It sits above every package (it imports `app`), where the
tests and the validation protocols use it; the packages themselves never import it (import-linter)."""
