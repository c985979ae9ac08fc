"""The signing ceremony engine, shared by the TUI and the headless ``sign`` command.

load (decode every byte, review against the pinned wallet, the policy in force and the
signing history, all from the verified journal) -> approve, officer by officer (each token
signs the request hash and hands over its share of the activation PIN; its journal anchor
is checked) -> sign (the station is activated with those shares, the request is reviewed
again at that moment, our inputs are signed inside the HSM, the decision is journaled, and
only then does the signed PSBT exist outside the HSM: as a file kept for a lost output and
as the result). Nothing here trusts what the coordinator says about the transaction, and
every refusal is journaled with its reason (deferred, in a fixed schema, when no officer
has opened the signing token yet).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from appliance.activation import Offer, QuorumError, make_offer
from appliance.appliance import Appliance
from appliance.files import atomic_write
from appliance.officers import unlock
from appliance.pending import MAX_MESSAGE, MAX_REFUSALS
from appliance.token_objects import AnchorError
from shared.bitcoin import ecdsa
from shared.bitcoin.sighash import SIGHASH_ALL, SighashCache
from shared.journal import Entry, outpoints_digest
from shared.policy import approval_digest, count_valid_approvals, utc_day
from shared.psbt import Psbt, PsbtError
from shared.psbt.fields import PSBT_IN_PARTIAL_SIG
from shared.psbt.scripts import spend_info
from shared.request import RequestMetadata, attach_receipt, read_receipts
from shared.requester import excluded_approver
from shared.review import InputView, Review, inputs_to_sign, refreshed, review
from shared.station import OutpointView


class SigningError(RuntimeError):
    """The ceremony cannot go on; the message is for the officers."""


def approved_request(current: Review) -> tuple[RequestMetadata, bytes]:
    """The request an approved review is about, and its hash (what the officers sign).

    The review refuses a request it cannot decode or hash, so an approved one has both; one
    without them is refused by name here rather than met as an AttributeError mid-ceremony.
    """
    if current.request is None or current.request_hash is None:
        raise SigningError("the review names no request (or no request hash) to approve")
    return current.request, current.request_hash


@dataclass(frozen=True)
class ApprovalState:
    approved: tuple[str, ...]
    needed: int
    rejected: tuple[tuple[str, str], ...]

    @property
    def complete(self) -> bool:
        return len(self.approved) >= self.needed


@dataclass(frozen=True)
class SignedResult:
    psbt_bytes: bytes
    receipt_seq: int
    signatures: int


@dataclass
class _Approval:
    signature: bytes
    offer: Offer


@dataclass
class SigningSession:
    """One request, from scanned bytes to the signed PSBT."""

    appliance: Appliance
    now: int | None = None
    psbt: Psbt | None = None
    review: Review | None = None
    previous: Entry | None = None  # the journal's approval of this very request, if any
    _approvals: dict[str, _Approval] = field(default_factory=dict)

    # -- load and review --------------------------------------------------------------------

    def load(self, data: bytes) -> Review | None:
        """Decode and review; a refused request is journaled and returned with its reasons.

        Returns None (after journaling) only when the bytes are not a PSBT at all. Refuses
        outright (SigningError) on a station whose journal does not verify or whose clock is
        behind its journal: nothing it would decide could be trusted.
        """
        self._require_station()
        try:
            psbt = Psbt.from_text(data)
            psbt = psbt.to_v0() if psbt.version != 0 else psbt
        except PsbtError as exc:
            self._record_refusal(
                {"refusals": [["malformed", f"malformed PSBT: {exc}"[:300]]]},
                {"psbt": hashlib.sha256(data).digest()},
            )
            return None
        result = self._review(psbt)
        self.psbt, self.review = psbt, result
        self.previous = self._previous_approval(result)
        if not result.approved_for_signing and self.previous is None:
            self._journal_review(result, "refused")
        return result

    def _previous_approval(self, result: Review) -> Entry | None:
        """The approval record of this exact request (same request hash and transaction),
        when the only refusal is that it was presented before: its signed PSBT may be
        shown again (:meth:`reshow`) instead of a second approval."""
        if result.request is None or set(result.refusal_codes) != {"replayed"}:
            return None
        seq = self.appliance.journal.history.approval_seq(result.request.request_id)
        if seq is None:
            return None
        entry = Entry.from_bytes(self.appliance.recorder.store.entry(seq))
        record = entry.record
        if (
            entry.record.hash() != self.appliance.journal.hash_at(seq)
            or record.subjects.get("request") != result.request_hash
            or result.txid is None
            or record.details.get("txid") != result.txid[::-1].hex()
        ):
            return None
        return entry

    def _require_station(self) -> int:
        from appliance.recorder import ClockError
        from appliance.state import StateError

        try:
            self.appliance.require_usable()
            return self.appliance.recorder.require_clock(self.now)
        except (StateError, ClockError) as exc:
            raise SigningError(str(exc)) from exc

    def _review(self, psbt: Psbt, now: int | None = None) -> Review:
        """The review against the journal's history as it stands now."""
        now = self._require_station() if now is None else now
        history = self.appliance.journal.history
        return review(
            psbt,
            self.appliance.pinned_wallet(),
            self.appliance.policy(),
            now=now,
            seen_request_ids=history.request_ids,
            signed_outpoints=OutpointView(history),
            spent_today_before=history.paid_on_day(utc_day(now)),
        )

    # -- approvals --------------------------------------------------------------------------

    def approve(self, officer_label: str, pin: str) -> ApprovalState:
        """One officer unlocks their token, signs the request hash, offers their share."""
        current = self._require_reviewable()
        policy = self.appliance.policy()
        registry = {o.fingerprint: o.active for o in policy.officers}
        _, request_hash = approved_request(current)
        digest = approval_digest(request_hash, policy.hash())
        with unlock(self.appliance.tokens(), self.appliance.guard, officer_label, pin) as officer:
            try:
                offer = make_offer(officer, registry)
                self.appliance.check_officer_anchor(officer)
            except (QuorumError, AnchorError) as exc:
                raise SigningError(str(exc)) from exc
            if officer.fingerprint in self._approvals:
                raise SigningError(f"officer {officer.fingerprint} has already approved")
            self._approvals[officer.fingerprint] = _Approval(officer.approve(digest), offer)
        return self.approval_state()

    def approval_state(self) -> ApprovalState:
        current = self._require_reviewable()
        policy = self.appliance.policy()
        request, request_hash = approved_request(current)
        tally = count_valid_approvals(
            policy,
            request_hash,
            {fp: a.signature for fp, a in self._approvals.items()},
            excluded_approver(policy.requesters, current.requester, request.requester),
        )
        return ApprovalState(tally.valid, policy.approval_quorum, tally.rejected)

    # -- signing ----------------------------------------------------------------------------

    def sign(self) -> SignedResult:
        """Activate with the approvers' shares, review again, sign, journal, then release."""
        current = self._require_reviewable()
        state = self.approval_state()
        if not state.complete:
            reason = f"{len(state.approved)} of {state.needed} valid approvals"
            self._journal_review(current, "refused", extra={"approvals": reason})
            raise SigningError(f"not enough approvals: {reason}")
        assert self.psbt is not None
        policy = self.appliance.policy()
        offers = [self._approvals[fp].offer for fp in state.approved]
        try:
            with self.appliance.activated_by(offers, policy, actors=state.approved):
                return self._sign_activated(current, state)
        finally:
            self._approvals.clear()

    def _sign_activated(self, approved: Review, state: ApprovalState) -> SignedResult:
        """Inside the activation: the moment of signing decides expiry, history and limits."""
        assert self.psbt is not None
        now = self._require_station()
        history = self.appliance.journal.history
        fresh = refreshed(
            approved,
            self.psbt.unsigned_tx,
            self.appliance.policy(),
            now=now,
            seen_request_ids=history.request_ids,
            signed_outpoints=OutpointView(history),
            spent_today_before=history.paid_on_day(utc_day(now)),
        )
        if not fresh.approved_for_signing:
            self.review = fresh
            reasons = "; ".join(str(r) for r in fresh.refusals) or "the request changed"
            self._journal_review(fresh, "refused", extra={"officers": "refused at signing"})
            raise SigningError(f"refused at the moment of signing: {reasons}")
        signed, count = self._sign_inputs(fresh)
        signatures = _partial_sigs_digest(signed)
        entry = self._journal_review(
            fresh,
            "approved",
            extra={
                "approvals": {fp: self._approvals[fp].signature for fp in state.approved},
                "quorum": state.needed,
                "signatures": count,
            },
            actors=state.approved,
            signed_digest=signatures,
        )
        assert entry is not None  # the token is unlocked: the record was written
        final = attach_receipt(signed, entry.to_bytes())
        result = SignedResult(final.serialize(), entry.record.seq, count)
        path = self.appliance.state.signed_path(fresh.txid[::-1].hex() if fresh.txid else "x")
        atomic_write(path, result.psbt_bytes)  # after the record: nothing leaves unjournaled
        return result

    # -- a lost signed output ---------------------------------------------------------------

    def reshow(self) -> bytes | None:
        """The signed PSBT of the journaled approval, from the station's copy, checked
        against the approval record (its signatures digest and receipt); None when the copy
        is missing or does not match (then :meth:`reissue` signs again)."""
        previous = self._require_previous()
        assert self.review is not None and self.review.txid is not None
        path = self.appliance.state.signed_path(self.review.txid[::-1].hex())
        try:
            data = path.read_bytes()
            kept = Psbt.parse(data)
        except (OSError, PsbtError):
            return None
        assert self.psbt is not None
        same_tx = kept.unsigned_tx.serialize() == self.psbt.unsigned_tx.serialize()
        if not same_tx or read_receipts(kept) != [previous.to_bytes()]:
            return None
        ours = [i for i in self.review.inputs if i.wallet is not None]
        return data if _signed_by_us(kept, ours) else None

    def reissue(self, officers: list[tuple[str, str]]) -> SignedResult:
        """The output of an approval was lost (a crash after its record, before the file):
        M officers activate and the same transaction is signed again, journaled as
        ``signing_reissued`` (no new approval, nothing counted toward any limit)."""
        previous = self._require_previous()
        current = self.review
        assert current is not None and current.txid is not None and self.psbt is not None
        policy = self.appliance.policy()
        ours = [i for i in current.inputs if i.wallet is not None]
        with self.appliance.activated(officers) as act:
            signed, count = self._sign_inputs_for(ours)
            entry = self.appliance.record(
                "signing_reissued",
                actors=act.actors,
                subjects={
                    "request": current.request_hash,
                    "psbt": previous.record.subjects["psbt"],
                    "signatures": _partial_sigs_digest(signed),
                },
                details={
                    "approval": previous.record.seq,
                    "txid": current.txid[::-1].hex(),
                    "signatures": count,
                    "quorum": policy.approval_quorum,
                },
            )
            final = attach_receipt(signed, previous.to_bytes())
            result = SignedResult(final.serialize(), previous.record.seq, count)
            atomic_write(
                self.appliance.state.signed_path(current.txid[::-1].hex()), result.psbt_bytes
            )
        del entry
        return result

    def _require_previous(self) -> Entry:
        if self.previous is None:
            raise SigningError("this request has no journaled approval to show again")
        return self.previous

    def refuse(self, reason: str) -> None:
        """The officers stop the ceremony; it is journaled as refused, with their reason."""
        current = self._require_reviewable()
        self._journal_review(current, "refused", extra={"officers": reason[:MAX_MESSAGE]})
        self._approvals.clear()

    def _sign_inputs(self, current: Review) -> tuple[Psbt, int]:
        return self._sign_inputs_for([current.inputs[i] for i, _ in inputs_to_sign(current)])

    def _sign_inputs_for(self, inputs: list[InputView]) -> tuple[Psbt, int]:
        assert self.psbt is not None
        psbt = self.psbt  # signed in place: the session ends with this signature (a copy of
        cache = SighashCache(psbt.unsigned_tx)  # a 1,450-input PSBT costs ~0.4 s)
        network = self.appliance.network
        count = 0
        for view in inputs:
            assert view.wallet is not None
            signer = view.wallet.signer
            info = spend_info(psbt, view.index)
            der = self.appliance.keystore.sign_digest(
                view.wallet.our_key.label,
                info.digest(cache, SIGHASH_ALL),
                signer.path,
                network,
                signer.pubkey,
            )
            psbt.inputs[view.index].set(
                PSBT_IN_PARTIAL_SIG, der + bytes([SIGHASH_ALL]), keydata=signer.pubkey
            )
            count += 1
        return psbt, count

    # -- journal ----------------------------------------------------------------------------

    def _require_reviewable(self) -> Review:
        if self.review is None or self.psbt is None:
            raise SigningError("no request loaded")
        if not self.review.approved_for_signing:
            reasons = "; ".join(r.message for r in self.review.refusals)
            raise SigningError(f"this request was refused: {reasons or 'by the policy'}")
        return self.review

    def _journal_review(
        self,
        current: Review,
        decision: str,
        extra: dict | None = None,
        actors: tuple[str, ...] = (),
        signed_digest: bytes | None = None,
    ) -> Entry | None:
        """The signing decision; the display transcript (what the officers saw) is kept
        beside the journal and bound to the record by its hash."""
        assert self.psbt is not None
        tx = self.psbt.unsigned_tx
        transcript = self.appliance.state.store_transcript(current.to_plain())
        details = {
            "txid": tx.txid_hex,
            "inputs": len(tx.inputs),
            "outpoints_sha256": outpoints_digest(txin.prevout for txin in tx.inputs).hex(),
            "refusals": [
                [r.code, r.message[:MAX_MESSAGE]] for r in current.refusals[:MAX_REFUSALS]
            ],
            **(
                {"refusals_total": len(current.refusals)}
                if len(current.refusals) > MAX_REFUSALS
                else {}
            ),
            **({"request_id": current.request.request_id} if current.request else {}),
            **(
                {"paid_out": current.paid_out, "fee": current.fee}
                if current.fee is not None and decision == "approved"
                else {}
            ),
            **(extra or {}),
        }
        subjects = {"psbt": hashlib.sha256(tx.serialize()).digest(), "transcript": transcript}
        if current.request_hash is not None:  # None when the request cannot be hashed
            subjects["request"] = current.request_hash
        if signed_digest is not None:
            subjects["signatures"] = signed_digest
        if decision == "refused" and not self.appliance.keystore.unlocked:
            self._record_refusal(details, subjects)
            return None
        return self.appliance.record(
            "signing_decision",
            decision=decision,
            actors=actors,
            subjects=subjects,
            details=details,
            outpoints=[txin.prevout for txin in tx.inputs],
        )

    def _record_refusal(self, details: dict, subjects: dict[str, bytes]) -> None:
        """A refusal decided before any officer opened the signing token waits as a
        fixed-schema deferred record (appliance.pending); otherwise it is journaled now."""
        if self.appliance.keystore.unlocked:
            self.appliance.record(
                "signing_decision", decision="refused", subjects=subjects, details=details
            )
            return
        kept = {k: details[k] for k in ("txid", "request_id") if k in details}
        reasons = list(details.get("refusals", []))
        for name, code in (("officers", "officers"), ("approvals", "quorum")):
            if isinstance(details.get(name), str):
                reasons.append([code, f"{name}: {details[name]}"[:MAX_MESSAGE]])
        kept["refusals"] = reasons[:MAX_REFUSALS] or [["officers", "refused"]]
        self.appliance.defer_refusal(subjects, kept)


#: How many of the newest records "show the last signed PSBT again" looks through.
LAST_SIGNED_LOOKBACK = 5_000


def last_signed(appliance: Appliance) -> SignedResult | None:
    """The newest approved signing's PSBT as the station kept it, to show again after its
    screen was left (issue 18): no approval, no HSM, nothing journaled. Only a copy that
    is exactly what its verified journal record vouches for is returned (same transaction,
    that record attached as its receipt, the signatures digest the record names); None
    when there is none within LAST_SIGNED_LOOKBACK records or the copy does not match."""
    store, journal = appliance.recorder.store, appliance.journal
    newest = len(store) - 1
    for seq in range(newest, max(-1, newest - LAST_SIGNED_LOOKBACK), -1):
        entry = Entry.from_bytes(store.entry(seq))
        record = entry.record
        if record.event != "signing_decision" or record.decision != "approved":
            continue
        if record.hash() != journal.hash_at(seq):
            return None
        txid = str(record.details.get("txid"))
        try:
            data = appliance.state.signed_path(txid).read_bytes()
            kept = Psbt.parse(data)
        except (OSError, PsbtError):
            return None
        if (
            kept.unsigned_tx.txid_hex != txid
            or read_receipts(kept) != [entry.to_bytes()]
            or _partial_sigs_digest(kept) != record.subjects.get("signatures")
        ):
            return None
        count = sum(len(inp.partial_sigs) > 0 for inp in kept.inputs)
        return SignedResult(data, seq, count)
    return None


def _signed_by_us(psbt: Psbt, inputs: list) -> bool:
    """Every one of our inputs carries our key's valid SIGHASH_ALL signature (the copy kept
    on the medium is shown again only if the HSM really made what it holds)."""
    cache = SighashCache(psbt.unsigned_tx)
    for view in inputs:
        pubkey = view.wallet.signer.pubkey
        sig = psbt.inputs[view.index].partial_sigs.get(pubkey)
        if sig is None or sig[-1] != SIGHASH_ALL:
            return False
        digest = spend_info(psbt, view.index).digest(cache, SIGHASH_ALL)
        if not ecdsa.verify(pubkey, sig[:-1], digest):
            return False
    return True


def _partial_sigs_digest(psbt: Psbt) -> bytes:
    """SHA-256 over every partial signature, input by input: names what the station released."""
    digest = hashlib.sha256()
    for index, inp in enumerate(psbt.inputs):
        for pubkey, sig in sorted(inp.partial_sigs.items()):
            digest.update(index.to_bytes(4, "big") + pubkey + sig)
    return digest.digest()


__all__ = ["ApprovalState", "SignedResult", "SigningError", "SigningSession", "last_signed"]
