"""The station's signing keys and their states, as its own journal tells them.

A key may sign only while it is active. The station learns a key's state from its key
registry, a file on untrusted storage (issue 12: editing ``keys.json`` let an archived key
sign), so the replay never asks the station: it folds the signed journal itself.

* ``key_generated`` and ``restore`` register ``subjects["public_key"]`` under
  ``details["label"]``, active;
* ``key_suspended`` (from active), ``key_reactivated`` (from suspended) and ``key_archived``
  (from active or suspended) change the state of the key with ``details["label"]``.

A transition the station must refuse (an unknown label, reactivating an archived key, a
label or public key registered twice) is a problem named by its seq, and is *not* applied:
the key keeps the state it legitimately had, so a forged "reactivated" record cannot make
later signatures look clean. Each approved ceremony keeps a :meth:`KeyBook.snapshot` of the
states at its seq; :meth:`KeyBook.signing_problem` then judges every signature the evidence
attributes to this station (in the transcript, the responses, the broadcast transaction).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType

from shared.journal import KEY_STATE_EVENTS, KEY_TRANSITIONS, Record

REGISTERING = frozenset({"key_generated", "restore"})
KEY_EVENTS = REGISTERING | KEY_STATE_EVENTS


@dataclass(frozen=True)
class KeyState:
    """One key as the journal has it; ``seq`` is the record that set ``state``."""

    label: str
    public_key: bytes
    state: str
    seq: int

    def describe(self) -> str:
        return f"key {self.label!r} ({self.public_key.hex()[:16]}…)"


class KeyBook:
    """Keys by public key, folded record by record; see the module docstring."""

    def __init__(self, audit_key: bytes) -> None:
        self.audit_key = audit_key
        self._by_public: dict[bytes, KeyState] = {}
        self._by_label: dict[str, bytes] = {}
        self._snapshot: Mapping[bytes, KeyState] | None = MappingProxyType({})

    def apply(self, record: Record) -> str | None:
        """Fold one key record; the problem (a transition the station must refuse), if any."""
        label = record.details.get("label")
        if not isinstance(label, str) or not label:
            return f"{record.event} names no key label"
        if record.event in REGISTERING:
            return self._register(record, label)
        allowed, target = KEY_TRANSITIONS[record.event]
        public = self._by_label.get(label)
        if public is None:
            return (
                f"{record.event} of key {label!r}, which no key_generated or restore "
                "record registered"
            )
        current = self._by_public[public]
        if current.state not in allowed:
            return (
                f"{record.event}: key {label!r} cannot go from {current.state} to {target} "
                f"(state kept as {current.state})"
            )
        self._set(replace(current, state=target, seq=record.seq))
        return None

    def _register(self, record: Record, label: str) -> str | None:
        public = record.subjects.get("public_key")
        if not isinstance(public, bytes) or len(public) != 33:
            return f"{record.event} of key {label!r} has no 33-byte public key"
        known = self._by_public.get(public)
        if known is not None:
            return (
                f"{record.event}: public key {public.hex()[:16]}… is already registered "
                f"as {known.label!r} (state kept as {known.state})"
            )
        problem = None
        if label in self._by_label:
            problem = (
                f"{record.event}: label {label!r} is already registered to "
                f"{self._by_label[label].hex()[:16]}…"
            )
        else:
            self._by_label[label] = public
        self._set(KeyState(label, public, "active", record.seq))
        return problem

    def _set(self, key: KeyState) -> None:
        self._by_public[key.public_key] = key
        self._snapshot = None

    def snapshot(self) -> Mapping[bytes, KeyState]:
        """The states now, read-only; shared between ceremonies until a key record changes
        them, so keeping one per ceremony costs nothing on a long journal."""
        if self._snapshot is None:
            self._snapshot = MappingProxyType(dict(self._by_public))
        return self._snapshot

    def registered(self, public_key: bytes) -> bool:
        """True when the journal registers ``public_key`` anywhere (at any seq)."""
        return public_key in self._by_public or public_key == self.audit_key

    def signing_problem(
        self, public_key: bytes, at: Mapping[bytes, KeyState], seq: int
    ) -> str | None:
        """Why a signature by ``public_key`` in the ceremony at ``seq`` (with key states
        ``at``) must not exist, or None when the key was active then."""
        if public_key == self.audit_key:
            return (
                f"signed by the station's audit key ({public_key.hex()[:16]}…), which "
                "may sign journal records only"
            )
        key = at.get(public_key)
        if key is None:
            later = self._by_public.get(public_key)
            if later is not None:
                return (
                    f"signed by {later.describe()}, registered only at seq {later.seq}, "
                    f"after seq {seq}"
                )
            return (
                f"signed by key {public_key.hex()[:16]}…, which no key_generated or "
                "restore record of this journal registers"
            )
        if key.state != "active":
            return (
                f"signed by {key.describe()}, which was {key.state} at seq {seq} "
                f"(since seq {key.seq})"
            )
        return None


__all__ = ["KEY_EVENTS", "KeyBook", "KeyState"]
