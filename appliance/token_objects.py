"""Small data objects the station keeps inside tokens, where the state medium cannot reach.

The state medium is untrusted (DESIGN 9), so what must not be rolled back lives in tokens:

- the **journal anchor**: the head (seq, hash) of the journal, as a private object in the
  signing token (rewritten after every append) and in each officer's token (refreshed
  whenever the officer unlocks it for this station). A journal behind or diverging from any
  anchor presented is refused (:func:`check_anchor`).
- the **PIN counters**: consecutive wrong PINs per officer token, as a *public* object in
  the signing token, because they change while the signing token is locked (an officer is
  typing a PIN). A public object can be rewritten by any program that can open a session on
  the token: with a real HSM that means code running on the station, not someone holding a
  copy of the medium. With SoftHSM2 the token files sit on the medium; see the threat model.

Objects are CKO_DATA with CKA_APPLICATION set to the appliance id, so one officer token can
serve several stations without their anchors colliding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pkcs11
from pkcs11 import Attribute, ObjectClass
from pkcs11.exceptions import PKCS11Error

from appliance.hsm import Hsm, HsmError
from shared import canonical

ANCHOR_LABEL = "coldstation-journal-anchor"
ANCHOR_TYPE = "coldstation-journal-anchor"
COUNTERS_LABEL = "coldstation-pin-counters"
COUNTERS_TYPE = "coldstation-pin-counters"
MAX_OBJECT_BYTES = 64 * 1024


class TokenObjectError(HsmError):
    """A station object in a token that is missing, duplicated or unreadable."""


# -- generic data objects -----------------------------------------------------------------


def _find(session: pkcs11.Session, label: str, application: str) -> list[pkcs11.Object]:
    return list(
        session.get_objects(
            {
                Attribute.CLASS: ObjectClass.DATA,
                Attribute.LABEL: label,
                Attribute.APPLICATION: application,
            }
        )
    )


def read_data(
    session: pkcs11.Session, label: str, application: str, where: str, newest: Any
) -> bytes | None:
    """The value of data object ``label``/``application``, or None if there is none.

    Tokens do not let a data object's value change (SoftHSM2: CKA_VALUE is fixed at
    creation), so a rewrite creates the new object before destroying the old one and a
    crash between the two leaves both: ``newest`` (values -> the newest value) decides.
    """
    try:
        values = [bytes(obj[Attribute.VALUE]) for obj in _find(session, label, application)]
    except PKCS11Error as exc:
        raise TokenObjectError(f"cannot read {label!r} in {where}: {exc!r}") from exc
    if not values:
        return None
    return values[0] if len(values) == 1 else newest(values)


def write_data(
    session: pkcs11.Session,
    label: str,
    application: str,
    value: bytes,
    *,
    private: bool,
    where: str,
) -> None:
    """Create the new object, then destroy the ones it replaces (see :func:`read_data`)."""
    if len(value) > MAX_OBJECT_BYTES:
        raise TokenObjectError(f"{label!r} would be {len(value)} bytes")
    try:
        old = _find(session, label, application)
        session.create_object(
            {
                Attribute.CLASS: ObjectClass.DATA,
                Attribute.TOKEN: True,
                Attribute.PRIVATE: private,
                Attribute.MODIFIABLE: True,
                Attribute.LABEL: label,
                Attribute.APPLICATION: application,
                Attribute.VALUE: value,
            }
        )
        for obj in old:
            obj.destroy()
    except PKCS11Error as exc:
        raise TokenObjectError(f"cannot write {label!r} in {where}: {exc!r}") from exc


def _decode(value: bytes, kind: str, where: str) -> dict[str, Any]:
    try:
        plain = canonical.decode(value, max_size=MAX_OBJECT_BYTES)
    except canonical.CanonicalError as exc:
        raise TokenObjectError(f"{kind} in {where} is unreadable: {exc}") from exc
    if not isinstance(plain, dict) or plain.get("type") != kind:
        raise TokenObjectError(f"{kind} in {where} is not a {kind}")
    return plain


# -- journal anchors ----------------------------------------------------------------------


@dataclass(frozen=True)
class Anchor:
    """A journal head kept outside the medium: the record ``seq`` hashes to ``head``."""

    seq: int
    head: bytes

    def to_bytes(self) -> bytes:
        return canonical.encode({"type": ANCHOR_TYPE, "seq": self.seq, "head": self.head})

    @classmethod
    def from_bytes(cls, value: bytes, where: str) -> Anchor:
        plain = _decode(value, ANCHOR_TYPE, where)
        seq, head = plain.get("seq"), plain.get("head")
        if (
            not isinstance(seq, int)
            or isinstance(seq, bool)
            or seq < 0
            or not isinstance(head, bytes)
            or len(head) != 32
        ):
            raise TokenObjectError(f"journal anchor in {where} is malformed")
        return cls(seq, head)


def read_anchor(hsm: Hsm, session: pkcs11.Session, appliance_id: str, where: str) -> Anchor | None:
    """The anchor in a logged-in token (private object), or None if it has none yet."""

    def newest(values: list[bytes]) -> bytes:
        return max(values, key=lambda v: Anchor.from_bytes(v, where).seq)

    with hsm.lock:
        value = read_data(session, ANCHOR_LABEL, appliance_id, where, newest)
    return None if value is None else Anchor.from_bytes(value, where)


def write_anchor(
    hsm: Hsm, session: pkcs11.Session, appliance_id: str, anchor: Anchor, where: str
) -> None:
    with hsm.lock:
        write_data(
            session, ANCHOR_LABEL, appliance_id, anchor.to_bytes(), private=True, where=where
        )


class AnchorError(RuntimeError):
    """The journal is behind or diverges from an anchor kept in a token."""


def check_anchor(anchor: Anchor, length: int, hash_at: Any, where: str, lost: Any = None) -> None:
    """Refuse a journal of ``length`` records that does not contain ``anchor``'s head.

    ``hash_at(seq)`` gives the hash of the journal's record ``seq``. A journal *ahead* of
    an anchor is fine when its record at the anchor's seq is the anchored one: the anchor is
    written just after each append, so a crash between the two leaves it one behind. An
    anchor for a record a recovery ceremony journaled as lost (``lost(seq)``) is accepted:
    the administrators have already accounted for it.
    """
    if lost is not None and lost(anchor.seq):
        return
    if anchor.seq >= length:
        have = f"ends at seq {length - 1}" if length else "is empty"
        raise AnchorError(
            f"the journal {have}, but {where} holds its head at seq {anchor.seq}: records "
            "were removed or an older copy was restored; run `journal recover` with the "
            "administrators"
        )
    if hash_at(anchor.seq) != anchor.head:
        raise AnchorError(
            f"the journal's record seq {anchor.seq} is not the one {where} anchored "
            f"({anchor.head.hex()[:16]}…): the journal was replaced or diverges"
        )


# -- PIN counters -------------------------------------------------------------------------


def read_counters(hsm: Hsm, token: pkcs11.Token, appliance_id: str) -> dict[str, int]:
    """Consecutive wrong PINs per officer token serial, from the signing token."""
    where = f"signing token {token.label!r}"

    def newest(values: list[bytes]) -> bytes:
        return max(values, key=lambda v: _generation(_decode(v, COUNTERS_TYPE, where)))

    with hsm.lock, hsm.public_session(token) as session:
        value = read_data(session, COUNTERS_LABEL, appliance_id, where, newest)
    if value is None:
        return {}
    plain = _decode(value, COUNTERS_TYPE, where)
    counts = plain.get("failures")
    if not isinstance(counts, dict) or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 0
        for k, v in counts.items()
    ):
        raise TokenObjectError(f"PIN counters in {where} are malformed")
    return dict(counts)


def write_counters(
    hsm: Hsm, token: pkcs11.Token, appliance_id: str, counts: dict[str, int]
) -> None:
    """Replace the counters; each write carries a generation one above the last."""
    where = f"signing token {token.label!r}"
    with hsm.lock, hsm.public_session(token) as session:
        current = read_data(
            session,
            COUNTERS_LABEL,
            appliance_id,
            where,
            lambda vs: max(vs, key=lambda v: _generation(_decode(v, COUNTERS_TYPE, where))),
        )
        generation = (
            0 if current is None else _generation(_decode(current, COUNTERS_TYPE, where)) + 1
        )
        value = canonical.encode(
            {
                "type": COUNTERS_TYPE,
                "generation": generation,
                "failures": dict(sorted(counts.items())),
            }
        )
        write_data(session, COUNTERS_LABEL, appliance_id, value, private=False, where=where)


def _generation(plain: dict[str, Any]) -> int:
    value = plain.get("generation", 0)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


# -- initialisation in progress -------------------------------------------------------------

INIT_MARKER_LABEL = "coldstation-init-in-progress"


def mark_initialising(hsm: Hsm, token: pkcs11.Token, appliance_id: str) -> None:
    """A public marker on a new signing token, destroyed when ``init`` completes: only a
    token that still carries it may be wiped by ``init --start-over`` (a station whose
    journal was emptied by someone else is recovered, never wiped)."""
    with hsm.lock, hsm.public_session(token) as session:
        write_data(
            session,
            INIT_MARKER_LABEL,
            appliance_id,
            b"1",
            private=False,
            where=f"signing token {token.label!r}",
        )


def initialising(hsm: Hsm, token: pkcs11.Token) -> bool:
    """True when the signing token carries the init-in-progress marker (any appliance)."""
    with hsm.lock, hsm.public_session(token) as session:
        try:
            return bool(
                list(
                    session.get_objects(
                        {Attribute.CLASS: ObjectClass.DATA, Attribute.LABEL: INIT_MARKER_LABEL}
                    )
                )
            )
        except PKCS11Error as exc:
            raise TokenObjectError(f"cannot search token {token.label!r}: {exc!r}") from exc


def clear_initialising(hsm: Hsm, token: pkcs11.Token) -> None:
    with hsm.lock, hsm.public_session(token) as session:
        try:
            for obj in session.get_objects(
                {Attribute.CLASS: ObjectClass.DATA, Attribute.LABEL: INIT_MARKER_LABEL}
            ):
                obj.destroy()
        except PKCS11Error as exc:
            raise TokenObjectError(
                f"cannot clear the init marker on {token.label!r}: {exc!r}"
            ) from exc
