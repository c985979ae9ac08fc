"""The coordinator's team (issue 19): users, their roles, their passwords, and the
requesters' passkeys.

Roles: a ``requester`` builds requests and signs their hashes with a passkey, an
``operator`` imports signed responses and broadcasts, a ``viewer`` (auditors) reads, an
``administrator`` manages users. Passwords are kept only as argon2id hashes (argon2-cffi's
defaults, RFC 9106's recommended parameters), checked in constant time by the library;
after :data:`MAX_FAILED_LOGINS` wrong passwords in a row the user is locked out for
:data:`LOCKOUT_SECONDS`, and every failure, lockout and success is an event. Nothing is
deleted: users are disabled, passkeys revoked.

A requester's passkey is what the station later verifies (``shared.requester``): its COSE
public key, credential id, and the RP id and origin it was registered at. The coordinator
hands it to the administrators as an enrolment file for the signed policy.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from functools import cache
from typing import Any

from online_coordinator.store import Store, now
from shared.journal import is_fingerprint
from shared.requester import Requester, RequesterError

ROLES = ("requester", "operator", "viewer", "administrator")
MAX_FAILED_LOGINS = 5
LOCKOUT_SECONDS = 15 * 60
MIN_PASSWORD = 12
MAX_PASSWORD = 1024
MAX_NAME = 64
#: The one answer to every refused sign-in: an unknown name, a wrong password and a user
#: locked out look the same, and take as long (no name can be found out by trying).
REFUSED = "wrong user name or password, or too many failed sign-ins: wait 15 minutes and try again"


@cache
def _hasher() -> Any:
    """argon2-cffi's hasher (the ``web`` extra), imported when a password is first used."""
    from argon2 import PasswordHasher

    return PasswordHasher()


@cache
def _dummy_hash() -> str:
    """Checked against when the name is unknown: a wrong name costs what a wrong password
    does, so names cannot be told apart by timing."""
    return str(_hasher().hash("coldstation: no such user"))


class UserError(ValueError):
    """A user or passkey that cannot be added, or a login that is refused."""


@dataclass(frozen=True)
class User:
    id: int
    name: str
    role: str
    session_epoch: int = 0


def check_name(name: str) -> str:
    """A user name: 1..64 ASCII letters, digits, ``.``, ``_`` or ``-``, not 16 hex digits
    (it is also the requester name the station shows and the policy lists, never to be
    mistaken for an officer's key fingerprint)."""
    allowed = all(c.isascii() and (c.isalnum() or c in "._-") for c in name)
    if not 0 < len(name) <= MAX_NAME or not allowed:
        raise UserError(f"user name {name[:MAX_NAME]!r}: use 1..64 letters, digits, . _ or -")
    if is_fingerprint(name):
        raise UserError(f"user name {name!r} looks like an officer key fingerprint")
    return name


def check_password(password: str) -> str:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise UserError(f"a password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    return password


def add_user(store: Store, name: str, role: str, password: str) -> User:
    """A new user with ``role``; refuses a name already taken (enabled or not)."""
    check_name(name)
    if role not in ROLES:
        raise UserError(f"role {role!r} is not one of {', '.join(ROLES)}")
    digest = _hasher().hash(check_password(password))
    try:
        with store.write() as db:
            cursor = db.execute(
                "INSERT INTO users (name, role, password_hash, created) VALUES (?, ?, ?, ?)",
                (name, role, digest, now()),
            )
            store.event("user_added", f"user {name} added as {role}")
    except sqlite3.IntegrityError:
        raise UserError(f"user {name} already exists") from None
    return User(int(cursor.lastrowid or 0), name, role)


def _any_user(store: Store, name: str) -> Any:
    row = store.one("SELECT * FROM users WHERE name = ?", name)
    if row is None:
        raise UserError(f"no user {name}")
    return row


def set_disabled(store: Store, name: str, disabled: bool) -> None:
    """Disable a user (every session ends at once, and neither password nor passkey signs
    in) or enable them again. The last enabled administrator is never disabled: nobody
    could manage users from the web pages then."""
    row = _any_user(store, name)
    if bool(row["disabled"]) == disabled:
        raise UserError(f"user {name} is already {'disabled' if disabled else 'enabled'}")
    with store.write() as db:
        if disabled and row["role"] == "administrator":
            others = db.execute(
                "SELECT COUNT(*) FROM users WHERE role = 'administrator' AND disabled = 0 "
                "AND id != ?",
                (row["id"],),
            ).fetchone()[0]
            if not others:
                raise UserError(f"{name} is the last enabled administrator: add another first")
        db.execute(
            "UPDATE users SET disabled = ?, session_epoch = session_epoch + 1, "
            "failed_logins = 0, locked_until = 0 WHERE id = ?",
            (int(disabled), row["id"]),
        )
        store.event(
            "user_disabled" if disabled else "user_enabled",
            f"user {name} {'disabled: every session ended' if disabled else 'enabled'}",
            severity="warning" if disabled else "info",
        )


def set_password(store: Store, name: str, password: str) -> None:
    """A new password for ``name`` (a reset by an administrator, told in person): the old
    one stops working, every session ends and a lockout is lifted."""
    row = _any_user(store, name)
    digest = _hasher().hash(check_password(password))
    with store.write() as db:
        db.execute(
            "UPDATE users SET password_hash = ?, session_epoch = session_epoch + 1, "
            "failed_logins = 0, locked_until = 0 WHERE id = ?",
            (digest, row["id"]),
        )
        store.event("password_reset", f"password of {name} reset: every session ended")


def find_user(store: Store, name: str) -> User | None:
    row = store.one(
        "SELECT id, name, role, session_epoch FROM users WHERE name = ? AND disabled = 0", name
    )
    return None if row is None else User(row["id"], row["name"], row["role"], row["session_epoch"])


def end_sessions(store: Store, user: User) -> None:
    """Sign-out: every session ``user`` holds ends (sessions name the epoch they began in)."""
    with store.write() as db:
        db.execute("UPDATE users SET session_epoch = session_epoch + 1 WHERE id = ?", (user.id,))
        store.event("logout", f"user {user.name} signed out", actor=user.name)


def authenticate(store: Store, name: str, password: str, at: int | None = None) -> User:
    """The user whose password this is, or UserError saying only that the login failed
    (or, for a user locked out, until when). Counts failures toward the lockout."""
    at = now() if at is None else at
    row = store.one("SELECT * FROM users WHERE name = ? AND disabled = 0", name)
    if row is None:
        _verify(_dummy_hash(), password)
        store.event("login_failed", f"login as unknown user {name[:MAX_NAME]!r} refused")
        raise UserError(REFUSED)
    right = _verify(row["password_hash"], password)  # checked even when locked: same time
    if row["locked_until"] > at:
        store.event("login_failed", f"login as {name} refused: locked out", actor=name)
        raise UserError(REFUSED)
    if not right:
        failures = row["failed_logins"] + 1
        locked = at + LOCKOUT_SECONDS if failures >= MAX_FAILED_LOGINS else 0
        with store.write() as db:
            db.execute(
                "UPDATE users SET failed_logins = ?, locked_until = ? WHERE id = ?",
                (0 if locked else failures, locked, row["id"]),
            )
            if locked:
                store.event(
                    "login_locked",
                    f"user {name} locked out for {LOCKOUT_SECONDS} s after "
                    f"{MAX_FAILED_LOGINS} failed logins",
                    severity="warning",
                    actor=name,
                )
            else:
                store.event("login_failed", f"wrong password for {name}", actor=name)
        raise UserError(REFUSED)
    user = User(row["id"], row["name"], row["role"], row["session_epoch"])
    record_login(store, user, "with a password")
    return user


def _verify(digest: str, password: str) -> bool:
    from argon2.exceptions import InvalidHashError, VerificationError

    try:
        return bool(_hasher().verify(digest, password))
    except (VerificationError, InvalidHashError):  # VerifyMismatchError is a VerificationError
        return False


# -- passkeys -------------------------------------------------------------------------------


def add_passkey(store: Store, user: User, requester: Requester) -> None:
    """``user``'s passkey (registered and verified by the caller), kept for the station's
    policy and for checking the user's assertions here."""
    if user.role != "requester":
        raise UserError(f"user {user.name} is a {user.role}: only requesters hold passkeys")
    if requester.name != user.name:
        raise UserError("a passkey is enrolled under its own user's name")
    if passkeys(store, user):
        raise UserError(
            f"{user.name} already holds a passkey: an administrator revokes it first "
            f"(coldstation-coordinator user revoke-passkey {user.name})"
        )
    try:
        with store.write() as db:
            db.execute(
                "INSERT INTO passkeys (user_id, credential_id, public_key, rp_id, origin, "
                "created) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    user.id,
                    requester.credential_id,
                    requester.public_key,
                    requester.rp_id,
                    requester.origin,
                    now(),
                ),
            )
            store.event(
                "passkey_enrolled",
                f"passkey enrolled for requester {user.name} at {requester.origin}",
                actor=user.name,
            )
    except sqlite3.IntegrityError:
        raise UserError("this passkey is already enrolled") from None


def passkeys(store: Store, user: User) -> tuple[Requester, ...]:
    """``user``'s active passkeys, as the policy would list them."""
    rows = store.all(
        "SELECT * FROM passkeys WHERE user_id = ? AND revoked = 0 ORDER BY id", user.id
    )
    try:
        return tuple(
            Requester(
                user.name,
                bytes(r["credential_id"]),
                bytes(r["public_key"]),
                r["rp_id"],
                r["origin"],
            )
            for r in rows
        )
    except RequesterError as exc:  # the database was edited
        raise UserError(f"a stored passkey of {user.name} is unusable: {exc}") from None


def revoke_passkeys(store: Store, name: str) -> int:
    """Revoke ``name``'s passkeys here (the station's policy is changed by the
    administrators: ``policy draft --revoke-requester``). Returns how many."""
    user = find_user(store, name)
    if user is None:
        raise UserError(f"no user {name}")
    with store.write() as db:
        count = db.execute(
            "UPDATE passkeys SET revoked = 1 WHERE user_id = ? AND revoked = 0", (user.id,)
        ).rowcount
        store.event("passkey_revoked", f"{count} passkey(s) of {name} revoked")
    return int(count)


def passkey_owner(store: Store, credential_id: bytes) -> tuple[User, Requester] | None:
    """The enabled user holding the active passkey ``credential_id``, with it (sign-in by
    passkey: the browser names the credential, the user follows from it)."""
    row = store.one(
        "SELECT u.id, u.name, u.role, u.session_epoch FROM passkeys p JOIN users u "
        "ON u.id = p.user_id "
        "WHERE p.credential_id = ? AND p.revoked = 0 AND u.disabled = 0",
        credential_id,
    )
    if row is None:
        return None
    user = User(row["id"], row["name"], row["role"], row["session_epoch"])
    held = [p for p in passkeys(store, user) if p.credential_id == credential_id]
    return (user, held[0]) if held else None


def record_login(store: Store, user: User, how: str) -> None:
    with store.write() as db:
        db.execute("UPDATE users SET failed_logins = 0, locked_until = 0 WHERE id = ?", (user.id,))
        store.event("login", f"user {user.name} logged in {how}", actor=user.name)
