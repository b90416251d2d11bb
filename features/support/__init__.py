"""Helpers the protocol steps share, not steps themselves: part of the installed `features` package (so that the
protocols run from a wheel) and of the step code QA approves with them (validation.services.step_code_files). The
tests reuse them from here; nothing under features/ imports from tests/."""
