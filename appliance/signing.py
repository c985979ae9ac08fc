"""The signing ceremony engine, shared by the TUI and the headless ``sign`` command.

load (decode every byte, review against the pinned wallet and the installed policy) ->
approve, officer by officer (each token signs the request hash and hands over its share of
the activation PIN) -> sign (rebuild the PIN, sign our inputs inside the HSM, journal,
attach the receipt). Nothing here trusts what the coordinator says about the transaction:
the review is computed from the PSBT alone, and every refusal is journaled with its reason.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

from appliance.activation import (
    ActivatedPin,
    Contribution,
    QuorumError,
    combine_contributions,
    contribute,
)
from appliance.ceremonies import Appliance
from appliance.history import SigningHistory
from appliance.officers import unlock
from shared.bitcoin.sighash import SIGHASH_ALL, SighashCache
from shared.journal import Entry
from shared.policy import approval_digest, count_valid_approvals
from shared.psbt import Psbt, PsbtError
from shared.psbt.scripts import spend_info
from shared.request import attach_receipt
from shared.review import Review, inputs_to_sign, review


class SigningError(RuntimeError):
    """The ceremony cannot go on; the message is for the officers."""


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
    contribution: Contribution


@dataclass
class SigningSession:
    """One request, from scanned bytes to the signed PSBT."""

    appliance: Appliance
    now: int | None = None
    psbt: Psbt | None = None
    review: Review | None = None
    _approvals: dict[str, _Approval] = field(default_factory=dict)

    # -- load and review --------------------------------------------------------------------

    def load(self, data: bytes) -> Review | None:
        """Decode and review; a refused request is journaled and returned with its reasons.

        Returns None (after journaling) only when the bytes are not a PSBT at all.
        """
        try:
            psbt = Psbt.from_text(data)
            psbt = psbt.to_v0() if psbt.version != 0 else psbt
        except PsbtError as exc:
            self._journal_refusal(f"malformed PSBT: {exc}", data=data)
            return None
        history = SigningHistory.from_entries(self.appliance.recorder.entries())
        now = int(time.time()) if self.now is None else self.now
        result = review(psbt, self.appliance.pinned_wallet(), self.appliance.policy(), now=now,
                        seen_request_ids=history.request_ids,
                        signed_outpoints=history.signed_outpoints,
                        spent_today_before=history.paid_on_day(now))  # fmt: skip
        self.psbt, self.review = psbt, result
        if not result.approved_for_signing:
            self._journal_review(result, "refused")
        return result

    # -- approvals --------------------------------------------------------------------------

    def approve(self, officer_label: str, pin: str) -> ApprovalState:
        """One officer unlocks their token, signs the request hash, offers their share."""
        current = self._require_reviewable()
        policy = self.appliance.policy()
        registry = {o.fingerprint: o.active for o in policy.officers}
        digest = approval_digest(current.request_hash, policy.hash())
        with unlock(self.appliance.hsm, self.appliance.guard, officer_label, pin) as officer:
            try:
                share = contribute(officer, registry)
            except QuorumError as exc:
                raise SigningError(str(exc)) from exc
            if officer.fingerprint in self._approvals:
                raise SigningError(f"officer {officer.fingerprint} has already approved")
            self._approvals[officer.fingerprint] = _Approval(officer.approve(digest), share)
        return self.approval_state()

    def approval_state(self) -> ApprovalState:
        current = self._require_reviewable()
        policy = self.appliance.policy()
        tally = count_valid_approvals(
            policy, current.request_hash,
            {fp: a.signature for fp, a in self._approvals.items()},
            current.request.requester,
        )  # fmt: skip
        return ApprovalState(tally.valid, policy.approval_quorum, tally.rejected)

    # -- signing ----------------------------------------------------------------------------

    def sign(self) -> SignedResult:
        """Rebuild the PIN from the approvers' shares, sign our inputs, journal, attach receipt."""
        current = self._require_reviewable()
        state = self.approval_state()
        if not state.complete:
            reason = f"{len(state.approved)} of {state.needed} valid approvals"
            self._journal_review(current, "refused", extra={"approvals": reason})
            raise SigningError(f"not enough approvals: {reason}")
        assert self.psbt is not None
        contributions = [self._approvals[fp].contribution for fp in state.approved]
        secret = combine_contributions(contributions, state.needed)
        with ActivatedPin(secret, [c.fingerprint for c in contributions]) as pin:
            secret[:] = bytes(len(secret))
            self.appliance.keystore.unlock(pin.reveal())
        try:
            signed, count = self._sign_inputs(current)
            entry = self._journal_review(current, "approved", extra={
                "approvals": {fp: a.signature for fp, a in self._approvals.items()
                                                if fp in state.approved},
                "signatures": count,
            })  # fmt: skip
        finally:
            self.appliance.keystore.lock()
            self._approvals.clear()
        assert entry is not None  # the token was unlocked: the record was written
        final = attach_receipt(signed, entry.to_bytes())
        return SignedResult(final.serialize(), entry.record.seq, count)

    def refuse(self, reason: str) -> None:
        """The officers stop the ceremony; it is journaled as refused, with their reason."""
        current = self._require_reviewable()
        self._journal_review(current, "refused", extra={"officers": reason})
        self._approvals.clear()

    def _sign_inputs(self, current: Review) -> tuple[Psbt, int]:
        assert self.psbt is not None
        psbt = Psbt.parse(self.psbt.serialize())
        cache = SighashCache(psbt.unsigned_tx)
        labels = {info.public_key_bytes: info.label for info in self.appliance.keystore.key_infos()}
        count = 0
        for index, pubkey in inputs_to_sign(current):
            info = spend_info(psbt, index)
            der = self.appliance.keystore.sign_digest(labels[pubkey],
                                                      info.digest(cache, SIGHASH_ALL))
            psbt.inputs[index].set(0x02, der + bytes([SIGHASH_ALL]), keydata=pubkey)
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

    def _journal_review(self, current: Review, decision: str,
                        extra: dict | None = None) -> Entry | None:  # fmt: skip
        """The signing decision; the display transcript (what the officers saw) is kept
        beside the journal and bound to the record by its hash."""
        assert self.psbt is not None
        tx = self.psbt.unsigned_tx
        transcript = self.appliance.state.store_transcript(current.to_plain())
        details = {
            "txid": tx.txid_hex,
            "outpoints": [str(txin.prevout) for txin in tx.inputs],
            "refusals": [[r.code, r.message] for r in current.refusals],
            **({"request_id": current.request.request_id} if current.request else {}),
            **({"paid_out": current.paid_out, "fee": current.fee}
               if current.fee is not None else {}),
            **(extra or {}),
        }  # fmt: skip
        subjects = {"psbt": hashlib.sha256(tx.serialize()).digest(), "transcript": transcript}
        if current.request_hash is not None:  # None when the request cannot be hashed
            subjects["request"] = current.request_hash
        return self._record(decision, details, subjects)

    def _journal_refusal(self, reason: str, data: bytes) -> None:
        self._record("refused", {"refusals": [["malformed", reason[:500]]]},
                     {"psbt": hashlib.sha256(data).digest()})  # fmt: skip

    def _record(self, decision: str, details: dict, subjects: dict[str, bytes]) -> Entry | None:
        """Journal needs the audit key in the signing token: a refusal decided before the
        officers activate it is kept pending and written at the next activation."""
        if self.appliance.keystore.unlocked:
            return self.appliance.recorder.record("signing_decision", decision=decision,
                                                  subjects=subjects, details=details)
        self.appliance.defer_record("signing_decision", decision=decision, subjects=subjects,
                                    details=details)  # fmt: skip
        return None


__all__ = ["ApprovalState", "SignedResult", "SigningError", "SigningSession"]
