"""The screens' one door to the signing engine (:mod:`appliance.signing`).

Why a door: the engine is written alongside the TUI, and no screen may crash on what an
engine call raises (a wrong PIN, a refused request, a token pulled out mid-ceremony).
Every call here returns the engine's answer or raises :class:`EngineError` carrying a
message for officers. If the engine's API moves, only this file changes.

The review reaches the screens as a :class:`ReviewView`: plain values in display units,
built from ``shared.review.Review`` by :func:`review_view`, so a renamed or added field
there is absorbed here. The engine's other answers pass through untouched:

- ``ApprovalState``: approved (fingerprints), needed, rejected ((fingerprint, reason)),
  complete;
- ``SignedResult``: psbt_bytes, receipt_seq.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from appliance.ceremonies import Appliance
from shared.review import Review, review_locks_text

T = TypeVar("T")


class EngineError(RuntimeError):
    """An engine call that did not go through; ``str()`` is what the officers read."""


class Session(Protocol):
    """What the screens need from ``appliance.signing.SigningSession``."""

    @property
    def review(self) -> Any: ...

    def load(self, psbt_bytes: bytes) -> Any: ...

    def approve(self, officer_label: str, pin: str) -> Any: ...

    def sign(self) -> Any: ...

    def refuse(self, reason: str) -> None: ...


SessionFactory = Callable[[Appliance], Session]


def default_session(appliance: Appliance) -> Session:
    """The real engine, imported only when a ceremony starts (a broken engine must not
    stop the officers from reading keys, policy and journal)."""
    try:
        from appliance.signing import SigningSession
    except ImportError as exc:
        raise EngineError(f"the signing engine cannot be loaded on this appliance: {exc}") \
            from exc  # fmt: skip
    return SigningSession(appliance)  # type: ignore[return-value]


def describe(exc: BaseException) -> str:
    """A failure as officers should read it: the ceremony's own words where there are any.

    Ceremony, quorum, officer, keystore and HSM errors already speak to officers; anything
    else is a fault in the appliance, said as such so nobody mistakes it for a refusal.
    """
    from appliance.activation import QuorumError
    from appliance.ceremonies import CeremonyError
    from appliance.hsm import HsmError
    from appliance.officers import OfficerError
    from appliance.state import StateError
    from shared.journal import JournalError
    from shared.policy import PolicyError

    expected = (CeremonyError, QuorumError, OfficerError, HsmError, StateError, JournalError,
                PolicyError, EngineError, OSError, ValueError)  # fmt: skip
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, expected) or type(exc).__name__ == "SigningError":
        return text
    return f"internal fault ({type(exc).__name__}): {text}"


def guarded(call: Callable[[], T]) -> T:
    """Run an engine or ceremony call; any failure comes back as :class:`EngineError`."""
    try:
        return call()
    except EngineError:
        raise
    except Exception as exc:
        message = describe(exc)
        if message.startswith("internal fault"):
            traceback.print_exc()  # the log keeps the trace; the officers get one sentence
        raise EngineError(message) from exc


class Ceremony:
    """One signing ceremony as the screens drive it: load, approve, sign or refuse."""

    def __init__(self, appliance: Appliance, factory: SessionFactory | None = None) -> None:
        self.appliance = appliance
        self._session = guarded(lambda: (factory or default_session)(appliance))
        self.review: Any = None

    def load(self, psbt_bytes: bytes) -> ReviewView:
        """The review of the scanned bytes; refused requests come back with their reasons."""
        result = guarded(lambda: self._session.load(psbt_bytes))
        if result is None:  # the engine's answer for bytes that are no PSBT at all
            raise EngineError("the scanned data is not a PSBT; the refusal is journaled")
        self.review = result
        return guarded(lambda: review_view(result))

    def approve(self, officer_label: str, pin: str) -> Any:
        return guarded(lambda: self._session.approve(officer_label, pin))

    def approval_state(self) -> Any | None:
        """Approvals so far (None before the first, when the engine cannot tell)."""
        current = getattr(self._session, "approval_state", None)
        return None if current is None else guarded(current)

    def sign(self) -> Any:
        return guarded(self._session.sign)

    def refuse(self, reason: str) -> None:
        guarded(lambda: self._session.refuse(reason))


def pinned_wallets(appliance: Appliance) -> list[str]:
    """The wallet descriptors this appliance signs for, as the journal pins them."""
    return appliance.pinned_descriptors()


# -- the review, in display terms --------------------------------------------------------------


@dataclass(frozen=True)
class RequestLine:
    request_id: str
    batch_id: str
    requester: str
    purpose: str
    kind: str
    created: int
    expiry: int


@dataclass(frozen=True)
class OutputLine:
    index: int
    amount: int
    address: str  # the address, or "script <hex>" for a script without one
    script_type: str
    label: str | None
    is_change: bool
    change_path: str | None  # where the wallet re-derived the change, when it did


@dataclass(frozen=True)
class InputLine:
    index: int
    outpoint: str
    amount: int | None
    script_type: str
    owner: str


@dataclass(frozen=True)
class ReviewView:
    """Everything the review screen shows; None where the PSBT did not let the engine know
    (the request is then refused, and the refusal says why)."""

    request: RequestLine | None
    request_hash: bytes | None
    hash_words: str | None
    network: str | None
    txid: str | None
    outputs: tuple[OutputLine, ...]
    inputs: tuple[InputLine, ...]
    total_in: int | None
    total_out: int
    paid_out: int
    fee: int | None
    vsize: int
    fee_rate: float | None  # sat/vB
    refusals: tuple[tuple[str, str], ...]  # (code, message)
    approved_for_signing: bool
    now: int | None  # the time the engine judged expiry against
    locks: str = ""  # version, nLockTime and nSequence, as signed


def review_view(review: Any) -> ReviewView:
    """The engine's Review (``shared.review.Review``) as the screens show it."""
    request = review.request
    facts = getattr(review, "facts", None)
    rate = getattr(review, "fee_rate", None)
    paid = getattr(review, "paid_to_others", None)
    return ReviewView(
        request=None if request is None else RequestLine(
            _hex(request.request_id), str(getattr(request, "batch_id", "")),
            str(request.requester), str(request.purpose), str(getattr(request, "kind", "")),
            int(getattr(request, "created", 0)), int(request.expiry)),
        request_hash=review.request_hash,
        hash_words=review.hash_words,
        network=review.network,
        txid=None if getattr(review, "txid", None) is None else review.txid[::-1].hex(),
        outputs=tuple(_output(o) for o in review.outputs),
        inputs=tuple(_input(i) for i in review.inputs),
        total_in=getattr(review, "total_in", None),
        total_out=review.total_out,
        paid_out=review.paid_out if paid is None else paid,
        fee=review.fee,
        vsize=review.vsize,
        fee_rate=None if rate is None else rate / 1000,  # the engine counts sat/kvB
        refusals=tuple((r.code, r.message) for r in review.refusals),
        approved_for_signing=bool(review.approved_for_signing),
        now=getattr(facts, "request_time", None),
        locks=review_locks_text(review) if isinstance(review, Review) else "",
    )  # fmt: skip


def _hex(value: Any) -> str:
    return value.hex() if isinstance(value, bytes | bytearray) else str(value)


def _output(out: Any) -> OutputLine:
    address = out.address or f"script {_hex(getattr(out, 'script_pubkey', b''))}"
    wallet = getattr(out, "wallet", None)
    return OutputLine(out.index, out.amount, address, str(out.script_type), out.label,
                      bool(out.is_change), wallet.describe() if wallet else None)  # fmt: skip


def _input(txin: Any) -> InputLine:
    owner = str(txin.owner)
    key = getattr(txin, "key", None)
    wallet = getattr(txin, "wallet", None)
    if key is not None:
        owner += f": key {key.label}"
        if getattr(key, "state", "active") != "active":
            owner += f" ({key.state})"
    if wallet is not None:
        owner += f", {wallet.describe()}"
    return InputLine(txin.index, str(txin.outpoint), txin.amount, str(txin.script_type), owner)
