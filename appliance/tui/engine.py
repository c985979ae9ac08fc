"""The screens' one door to the signing engine (:mod:`appliance.signing`).

Why a door: the engine is written alongside the TUI, and no screen may crash on what an
engine call raises (a wrong PIN, a refused request, a token pulled out mid-ceremony).
Every call here returns the engine's answer or raises :class:`EngineError` carrying a
message for officers. If the engine's API moves, only this file changes.

The review reaches the screens as a :class:`ReviewView`: plain values in display units,
built field by field from ``shared.review.Review`` by :func:`review_view`. The fields are
read as the dataclasses declare them (no ``getattr`` with a default), so a renamed field
fails the type check and the tests here instead of showing an empty line or 1970 on the
screen officers approve. The engine's other answers pass through untouched:
``ApprovalState`` (approved fingerprints, needed, rejected (fingerprint, reason), complete)
and ``SignedResult`` (psbt_bytes, receipt_seq).
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar

from appliance.appliance import Appliance
from shared.review import InputView, OutputView, Review, requester_line, review_locks_text

if TYPE_CHECKING:  # the engine itself loads only when a ceremony starts (default_session)
    from appliance.signing import ApprovalState, SignedResult

T = TypeVar("T")


class EngineError(RuntimeError):
    """An engine call that did not go through; ``str()`` is what the officers read."""


class Session(Protocol):
    """What the screens need from ``appliance.signing.SigningSession``."""

    def load(self, psbt_bytes: bytes, /) -> Review | None: ...

    def approve(self, officer_label: str, pin: str) -> ApprovalState: ...

    def approval_state(self) -> ApprovalState: ...

    def sign(self) -> SignedResult: ...

    def refuse(self, reason: str) -> None: ...


SessionFactory = Callable[[Appliance], Session]


def default_session(appliance: Appliance) -> Session:
    """The real engine, imported only when a ceremony starts (a broken engine must not
    stop the officers from reading keys, policy and journal)."""
    try:
        from appliance.signing import SigningSession
    except ImportError as exc:
        raise EngineError(f"the signing engine cannot be loaded on this appliance: {exc}") from exc
    return SigningSession(appliance)


def describe(exc: BaseException) -> str:
    """A failure as officers should read it: the ceremony's own words where there are any.

    The failures the CLI maps to a refusal or to bad input (:mod:`appliance.exit_codes`)
    already speak to officers; anything else is a fault in the appliance, said as such so
    nobody mistakes it for a refusal.
    """
    from appliance.exit_codes import is_expected

    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, EngineError) or is_expected(exc):
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
        self.review: Review | None = None

    def load(self, psbt_bytes: bytes) -> ReviewView:
        """The review of the scanned bytes; refused requests come back with their reasons."""
        result = guarded(lambda: self._session.load(psbt_bytes))
        if result is None:  # the engine's answer for bytes that are no PSBT at all
            raise EngineError("the scanned data is not a PSBT; the refusal is journaled")
        self.review = result
        return guarded(lambda: review_view(result))

    def approve(self, officer_label: str, pin: str) -> ApprovalState:
        return guarded(lambda: self._session.approve(officer_label, pin))

    def approval_state(self) -> ApprovalState:
        """Approvals so far."""
        return guarded(self._session.approval_state)

    def sign(self) -> SignedResult:
        return guarded(self._session.sign)

    def refuse(self, reason: str) -> None:
        guarded(lambda: self._session.refuse(reason))


def pinned_wallets(appliance: Appliance) -> list[str]:
    """The wallet descriptors this appliance signs for, as the journal pins them."""
    return appliance.pinned_descriptors()


# -- the review, in display terms --------------------------------------------------------------


@dataclass(frozen=True)
class RequestLine:
    request_id: str  # hex
    batch_id: str
    requester: str
    purpose: str
    kind: str
    created: int  # UTC seconds, as the requester declared it
    expiry: int  # UTC seconds


@dataclass(frozen=True)
class OutputLine:
    index: int
    amount_sat: int
    address: str  # the address, or "script <hex>" for a script without one
    script_type: str
    label: str | None
    is_change: bool
    change_path: str | None  # the pinned wallet that re-derives it, when one does
    our_key: str | None = None  # that wallet's key of ours (a payment to it is not change)


@dataclass(frozen=True)
class InputLine:
    index: int
    outpoint: str
    amount_sat: int | None
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
    txid: str | None  # hex, in the order block explorers show
    outputs: tuple[OutputLine, ...]
    inputs: tuple[InputLine, ...]
    total_in_sat: int | None
    total_out_sat: int | None
    paid_out_sat: int | None  # to others: change excluded
    fee_sat: int | None
    vsize: int  # vbytes
    fee_rate_sat_per_vb: float | None
    refusals: tuple[tuple[str, str], ...]  # (code, message)
    approved_for_signing: bool
    judged_at: int | None  # the station's UTC time the engine judged expiry against
    locks: str  # version, nLockTime and nSequence, as signed

    @property
    def change_sat(self) -> int | None:
        """What goes back to our own wallets (None when a total is unknown)."""
        if self.total_out_sat is None or self.paid_out_sat is None:
            return None
        return self.total_out_sat - self.paid_out_sat


def review_view(review: Review) -> ReviewView:
    """The engine's Review (``shared.review.Review``) as the screens show it."""
    request = review.request
    facts = review.facts
    rate_sat_per_kvb = review.fee_rate  # the policy's unit, rounded up
    return ReviewView(
        request=None
        if request is None
        else RequestLine(
            request.request_id.hex(),
            request.batch_id,
            requester_line(review),
            request.purpose,
            request.kind,
            request.created,
            request.expiry,
        ),
        request_hash=review.request_hash,
        hash_words=review.hash_words,
        network=review.network,
        txid=None if review.txid is None else review.txid[::-1].hex(),
        outputs=tuple(_output(o) for o in review.outputs),
        inputs=tuple(_input(i) for i in review.inputs),
        total_in_sat=review.total_in,
        total_out_sat=review.total_out,
        paid_out_sat=review.paid_to_others,
        fee_sat=review.fee,
        vsize=review.vsize,
        fee_rate_sat_per_vb=None if rate_sat_per_kvb is None else rate_sat_per_kvb / 1000,
        refusals=tuple((r.code, r.message) for r in review.refusals),
        approved_for_signing=review.approved_for_signing,
        judged_at=None if facts is None else facts.request_time,
        locks=review_locks_text(review),
    )


def _output(out: OutputView) -> OutputLine:
    address = out.address or f"script {out.script_pubkey.hex()}"
    wallet = out.wallet
    return OutputLine(
        out.index,
        out.amount,
        address,
        out.script_type,
        out.label,
        out.is_change,
        wallet.describe() if wallet else None,
        wallet.our_key.label if wallet else None,
    )


def _input(txin: InputView) -> InputLine:
    owner = txin.owner
    key = txin.key
    if key is not None:
        owner += f": key {key.label}"
        if key.account is not None:
            owner += " (bip32 seed: signed by its child, key in station memory)"
        if key.state != "active":
            owner += f" ({key.state})"
    if txin.wallet is not None:
        owner += f", {txin.wallet.describe()}"
    return InputLine(txin.index, str(txin.outpoint), txin.amount, txin.script_type, owner)
