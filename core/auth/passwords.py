"""Password hashing (argon2id) and the password policy."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
from functools import lru_cache
from importlib import resources

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from flask import g, has_app_context

from core.errors import ValidationError

_hasher = PasswordHasher()


def use_fast_hashing_for_tests() -> None:
    """Cheaper argon2 parameters so that test fixtures stay quick. Never called by the application."""
    global _hasher
    _hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def _argon2_verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


# A password checked before the write transaction (precheck) is not checked again inside it. On SQLite the unit of work
# holds the database's write lock from its first statement (BEGIN IMMEDIATE); argon2 takes about 240 ms of CPU on
# purpose, and no other request could write meanwhile. The answer is kept for the rest of the request (flask.g) under
# the hash it was checked against and a keyed digest of the password (never the password), and used once.
_PRECHECK_KEY = secrets.token_bytes(32)
_PRECHECKED = "_attest_password_prechecks"


def _precheck_key(password_hash: str, password: str) -> tuple[str, bytes]:
    return password_hash, hmac.new(_PRECHECK_KEY, password.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()


def precheck(password_hash: str | None, password: str) -> None:
    """Verify `password` against `password_hash` now, outside any write transaction; the next verify_password() of
    the same hash and password in this request uses the answer. A hash changed meanwhile is verified afresh."""
    if not has_app_context():
        return
    password_hash = password_hash or _dummy_hash()
    answers = g.setdefault(_PRECHECKED, {})
    answers[_precheck_key(password_hash, password)] = _argon2_verify(password_hash, password)


def verify_password(password_hash: str, password: str) -> bool:
    if has_app_context():
        answer = g.get(_PRECHECKED, {}).pop(_precheck_key(password_hash, password), None)
        if answer is not None:
            return answer
    return _argon2_verify(password_hash, password)


_DUMMY_HASH = None


def _dummy_hash() -> str:
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        _DUMMY_HASH = _hasher.hash(secrets.token_hex(16))
    return _DUMMY_HASH


def burn_time(password: str) -> None:
    """Spend the time of one verification, so an unknown username answers as slowly as a wrong password."""
    verify_password(_dummy_hash(), password)


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    text = resources.files("core.auth").joinpath("common_passwords.txt").read_text(encoding="utf-8")
    return frozenset(line.strip().lower() for line in text.splitlines() if line.strip() and not line.startswith("#"))


def check_policy(password: str, *, username: str, min_length: int, previous_hashes: list[str],
                 field: str = "new_password", history: int | None = None) -> None:
    """Raise ValidationError naming the rule the password breaks. `history` is the configured N of the "not one of
    the last N" rule (the user may have fewer previous passwords than that)."""
    if len(password) < min_length:
        raise ValidationError(field, f"Password must be at least {min_length} characters long.")
    lowered = password.lower()
    if username and username.lower() in lowered:
        raise ValidationError(field, "Password must not contain your username.")
    if lowered in common_passwords() or lowered.rstrip(string.digits + string.punctuation) in common_passwords():
        raise ValidationError(field, "Password is too common; choose one that is not on a list of known passwords.")
    if len(set(password)) < 4:
        raise ValidationError(field, "Password must contain at least 4 different characters.")
    for old in previous_hashes:
        if verify_password(old, password):
            raise ValidationError(
                field, f"Password must not be one of your last {history or len(previous_hashes)} passwords."
            )


def generate_temporary_password() -> str:
    """A random one-time password an administrator hands over; the user must change it at first login."""
    alphabet = string.ascii_letters + string.digits
    core = "".join(secrets.choice(alphabet) for _ in range(16))
    return f"{core[:4]}-{core[4:8]}-{core[8:12]}-{core[12:]}"
