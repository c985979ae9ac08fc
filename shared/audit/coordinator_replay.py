"""Check 4: the coordinator's evidence against the appliances' journals.

The coordinator is not trusted; its evidence only gives bytes to re-check. Every receipt
must verify under the audit key pinned for its appliance and be a record of that
appliance's journal (same record hash). Every request's hash is recomputed from its
unsigned PSBT. Every partial signature in a response must verify and be by a key of the
wallet. Every broadcast transaction must be exactly an approved request's transaction
(same unsigned serialization), its signatures must verify, and each appliance whose key
signed it must have approved that request in exactly one journal record.

Receipts are also held to the record contract (:func:`shared.journal.receipt_problem`: not
deferred, a recorded quorum met by distinct officers). Every signature by a station's key,
in a response or in the broadcast transaction, must be by a key that station's journal had
active at the seq of its approval (:class:`~shared.audit.keys.KeyBook`).

The requests and broadcasts come as facts (:mod:`shared.audit.facts`): what decoding their
PSBTs and transactions gives, derived where the evidence was parsed, with each partial
signature already checked there; the requests are walked in order, once. A broadcast's
signatures were checked as the evidence was read, when the request whose transaction it is
came by (the first with that transaction), against that request's signature hashes, a
signature the request's responses already verified counting as verified (the same key,
signature and hash): :attr:`CoordinatorEvidence.matched`. They are judged here, in turn.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from shared.audit import transcript as tr
from shared.audit.evidence import CoordinatorEvidence, WalletEvidence
from shared.audit.facts import (
    BroadcastEvidence,
    Match,
    PartialFacts,
    ReceiptFacts,
    Recomputed,
    RequestEvidence,
    ResponseFacts,
    value,
)
from shared.audit.journal_replay import ApplianceReplay
from shared.audit.model import BroadcastResult, Ceremony, Finding
from shared.audit.wallets import WalletIndex
from shared.bitcoin import ecdsa
from shared.journal import receipt_problem

__all__ = ["CoordinatorReplay", "Recomputed"]


@dataclass
class _Unmatched:
    """Receipts of appliances whose bundle was not given: one finding per appliance."""

    counts: dict[str, int] = field(default_factory=dict)

    def add(self, appliance: str) -> None:
        self.counts[appliance] = self.counts.get(appliance, 0) + 1


class CoordinatorReplay:
    """Run check 4; read ``findings`` and ``broadcasts`` afterwards, and ``input_wallets``
    (request id -> the wallets its inputs spend from, for the last request with that id)
    and, when asked for with ``shapes``, ``by_shape`` (each transaction shape's first
    request: id, txid field, state), for the checks that follow."""

    def __init__(
        self,
        evidence: CoordinatorEvidence,
        appliances: Mapping[str, ApplianceReplay],
        index: WalletIndex,
        *,
        shapes: bool = False,
    ) -> None:
        self.evidence = evidence
        self.appliances = appliances
        self.index = index
        self.findings: list[Finding] = []
        self.broadcasts: list[BroadcastResult] = []
        self.notes: list[str] = []
        self.input_wallets: dict[str, tuple[str, ...]] = {}
        self.by_shape: dict[bytes, tuple[str, str, str]] | None = {} if shapes else None
        self._unmatched = _Unmatched()
        self._seen: set[tuple[str, bytes]] = set()
        self._request_ids: set[str] = set()
        self._wallet_sets: dict[tuple[str, ...], tuple[str, ...]] = {}
        self._key_hex: dict[bytes, str] = {}
        self._states: dict[str, str] = {}

    def add(self, check: str, message: str, **where: object) -> Finding:
        finding = Finding(check, message, **where)  # type: ignore[arg-type]
        self.findings.append(finding)
        return finding

    def run(self) -> CoordinatorReplay:
        for wallet in self.evidence.wallets:
            self._wallet_receipts(wallet)
        for request in self.evidence.requests:
            self._request(request)
        self._unknown_approvals()
        self._broadcasts()
        for appliance, count in sorted(self._unmatched.counts.items()):
            self.add(
                "receipt",
                f"{count} receipt(s) cannot be matched to a journal: no bundle "
                "was given for this appliance",
                appliance=appliance,
            )
        return self

    # -- receipts ---------------------------------------------------------------------------

    def _receipt(
        self, entry: ReceiptFacts, claimed: str | None, where: str, **context: object
    ) -> None:
        """One receipt: filed under its own appliance, signed by the pinned audit key, and
        a record of that appliance's journal (same seq, same record hash)."""
        appliance = entry.appliance_id
        where_seq = {"appliance": appliance, "seq": entry.seq, **context}
        if claimed is not None and claimed != appliance:
            self.add(
                "receipt",
                f"{where}: filed under {claimed!r} but signed as {appliance!r}",
                **where_seq,
            )
        replay = self.appliances.get(appliance)
        key = self.evidence.appliances.get(appliance)
        if key is None:
            self.add(
                "receipt", f"{where}: from an appliance the coordinator never pinned", **where_seq
            )
        if replay is None:
            self._unmatched.add(appliance)
            if key is not None and not entry.verify(key):
                self.add(
                    "receipt", f"{where}: does not verify under the pinned audit key", **where_seq
                )
            return
        if replay.same_entry(entry) and replay.bundle.audit_key == key:
            return  # the journal's own entry: verified with the journal, under this key
        digest = entry.hash
        if key is not None and not ecdsa.verify(key, entry.signature, digest):
            self.add("receipt", f"{where}: does not verify under the pinned audit key", **where_seq)
        if replay.hash_at(entry.seq) != digest:
            self.add(
                "receipt",
                f"{where}: {entry.event} record seq {entry.seq} is not in the appliance's journal",
                **where_seq,
            )

    def _wallet_receipts(self, wallet: WalletEvidence) -> None:
        texts = {str(d) for d in wallet.descriptors}
        for member in wallet.members:
            for kind, entry in (("export", member.export_receipt), ("pin", member.pin_receipt)):
                if entry is None:
                    continue
                where = f"wallet {wallet.name} {kind} receipt"
                record = entry.record
                located = {"appliance": record.appliance_id, "seq": record.seq}
                self._receipt(ReceiptFacts.of(entry), member.appliance_id, where)
                problem = receipt_problem(record, wallet=True)
                if problem is not None:
                    self.add("receipt", f"{where} is no valid receipt: {problem}", **located)
                named = record.details.get("descriptor")
                fits = member.key in str(named) if kind == "export" else named in texts
                events = (
                    ("wallet_exported",)
                    if kind == "export"
                    else ("wallet_exported", "wallet_pinned")
                )
                if record.event not in events or not fits:
                    self.add(
                        "receipt", f"{where} does not record this wallet's descriptor", **located
                    )

    # -- requests ---------------------------------------------------------------------------

    def _request(self, request: RequestEvidence) -> None:
        rid = request.request_id
        value(request.unsigned)  # raises here, as before, when it cannot be computed
        self._request_ids.add(rid)
        self._request_hash(request, request.recomputed)
        if request.txid != value(request.unsigned_txid):
            self.add(
                "request",
                f"txid field {request.txid} is not the PSBT's {value(request.unsigned_txid)}",
                request_id=rid,
            )
        self._inputs_are_ours(request)
        for receipt in request.receipts:
            self._approval_receipt(request, receipt.entry, receipt.appliance_id, receipt.where)
            self._seen.add((rid, receipt.digest))
        for number, response in enumerate(request.responses):
            self._response(request, number, response)
        self._link_ceremonies(request)
        self._remember(request)

    def _remember(self, request: RequestEvidence) -> None:
        """What the later checks need of this request (not the request itself)."""
        wallets = tuple(
            dict.fromkeys(
                w
                for s in request.spent_scripts
                if s is not None and (w := self.index.wallet_of(s)) is not None
            )
        )
        self.input_wallets[request.request_id] = self._wallet_sets.setdefault(wallets, wallets)
        if self.by_shape is not None:
            self.by_shape.setdefault(
                value(request.shape), (request.request_id, request.txid, request.state)
            )

    def _request_hash(self, request: RequestEvidence, again: Recomputed) -> None:
        rid = request.request_id
        if again.digest is None:
            self.add(
                "request", f"the request hash cannot be recomputed: {again.problem}", request_id=rid
            )
            return
        if again.digest != request.request_hash:
            self.add(
                "request",
                f"request hash {request.request_hash.hex()} does not recompute "
                f"from the PSBT ({again.digest.hex()})",
                request_id=rid,
            )
        if again.request_id != rid:
            self.add("request", f"the PSBT's request id is {again.request_id}", request_id=rid)

    def _inputs_are_ours(self, request: RequestEvidence) -> None:
        for i, script in enumerate(value(request.input_scripts)):
            if script is None or self.index.wallet_of(script) is None:
                self.add(
                    "request",
                    f"input {i} spends a script no wallet descriptor derives",
                    request_id=request.request_id,
                )

    def _response(self, request: RequestEvidence, number: int, response: ResponseFacts) -> None:
        rid, where = request.request_id, f"response {number}"
        if not value(response.same):
            self.add("response", f"{where} is for another transaction", request_id=rid)
            return
        for partial in value(response.partial):
            self._partial_sigs(request, partial, where)
        self._response_receipts(request, response, where)

    def _response_receipts(
        self, request: RequestEvidence, response: ResponseFacts, where: str
    ) -> None:
        """Receipts the response carries; those already checked (the same bytes are in the
        request's receipts) are not checked twice."""
        rid = request.request_id
        if all((rid, digest) in self._seen for digest in response.carried):
            return
        read = response.read
        assert read is not None  # read whenever one is not among the request's receipts
        if isinstance(read, str):
            self.add("response", f"{where}: unreadable receipt: {read}", request_id=rid)
            return
        for digest, entry in read:
            if (rid, digest) not in self._seen:
                self._seen.add((rid, digest))
                self._approval_receipt(request, entry, None, f"{where} receipt")

    def _partial_sigs(self, request: RequestEvidence, partial: PartialFacts, where: str) -> None:
        rid = request.request_id
        if partial.problem is not None:
            self.add("response", f"{where}: {value(partial.problem)}", request_id=rid)
            return
        owned = self.index.scripts.get(partial.script) if partial.script is not None else None
        for pubkey, may_sign in partial.keys:
            if not may_sign or owned is None or pubkey not in owned.keys:
                self.add(
                    "response",
                    f"{where}: input {partial.input_index} carries a signature by "
                    f"{pubkey.hex()}, which is not a key of the wallet's script",
                    request_id=rid,
                )

    def _approval_receipt(
        self, request: RequestEvidence, entry: ReceiptFacts, claimed: str | None, where: str
    ) -> None:
        rid = request.request_id
        self._receipt(entry, claimed, where, request_id=rid)
        if entry.problem is not None:
            self.add(
                "receipt",
                f"{where} is no valid receipt: {entry.problem}",
                appliance=entry.appliance_id,
                seq=entry.seq,
                request_id=rid,
            )
        if entry.event == "signing_decision" and entry.request != request.request_hash:
            self.add(
                "receipt",
                f"{where} approves another request hash",
                appliance=entry.appliance_id,
                seq=entry.seq,
                request_id=rid,
            )

    def _link_ceremonies(self, request: RequestEvidence) -> None:
        """Every journal decision on this request: the transcript shows the request's tx."""
        psbt_hash = request.psbt_hash
        for replay in self.appliances.values():
            for ceremony in replay.by_request.get(request.request_hash, []):
                ceremony.coordinator_request = request.request_id
                self._ceremony_matches(replay, ceremony, request, psbt_hash)

    def _ceremony_matches(
        self,
        replay: ApplianceReplay,
        ceremony: Ceremony,
        request: RequestEvidence,
        psbt_hash: bytes,
    ) -> None:
        if ceremony.psbt_hash is not None and ceremony.psbt_hash != psbt_hash:
            replay.add(
                "ceremony",
                "the record's psbt hash is not the request's transaction",
                seq=ceremony.seq,
                ceremony=ceremony,
                request_id=request.request_id,
            )
        if ceremony.decision == "approved":
            for number, response in enumerate(request.responses):
                for i, keys in response.signers:
                    for pubkey in keys:
                        self._station_key(
                            replay,
                            ceremony,
                            pubkey,
                            "ceremony",
                            f"response {number}: input {i} is",
                            request.request_id,
                        )
        if ceremony.transcript is None:
            return
        for problem in tr.compare_kept(ceremony.transcript, *value(request.shown)):
            replay.add(
                "ceremony",
                f"transcript: {problem}",
                seq=ceremony.seq,
                ceremony=ceremony,
                request_id=request.request_id,
            )

    def _unknown_approvals(self) -> None:
        """An approval the coordinator never heard of is a signed transaction at large."""
        for replay in self.appliances.values():
            for ceremonies in replay.approved.values():
                # linked to a request of the evidence with that hash, or to none
                if ceremonies[0].coordinator_request is None:
                    for ceremony in ceremonies:
                        replay.add(
                            "ceremony",
                            "approved and signed, but the request is not in "
                            "the coordinator evidence",
                            seq=ceremony.seq,
                            ceremony=ceremony,
                            txid=ceremony.txid,
                        )

    # -- broadcasts -------------------------------------------------------------------------

    def _broadcasts(self) -> None:
        seen: dict[str, int] = {}
        for position, broadcast in enumerate(self.evidence.broadcasts):
            result = self._broadcast(position, broadcast)
            txid = broadcast.tx_txid
            if txid in seen:
                self._fail(result, f"broadcast {seen[txid]} already holds this transaction")
            seen.setdefault(txid, broadcast.position)
            self.broadcasts.append(result)

    def _fail(self, result: BroadcastResult, message: str, **where: object) -> None:
        where.setdefault("txid", result.txid)
        result.findings.append(self.add("broadcast", message, **where))

    def _broadcast(self, position: int, broadcast: BroadcastEvidence) -> BroadcastResult:
        state = (
            self._states.setdefault(broadcast.state, broadcast.state)
            if len(self._states) < 64
            else broadcast.state
        )  # one copy of each state word
        result = BroadcastResult(broadcast.tx_txid, state, broadcast.height, None)
        if broadcast.txid != broadcast.tx_txid or broadcast.wtxid != broadcast.tx_wtxid:
            self._fail(
                result,
                f"recorded txid/wtxid {broadcast.txid}/{broadcast.wtxid} are not "
                "those of its raw bytes",
            )
        match = self.evidence.matched.get(position)
        if match is None:
            self._fail(
                result,
                "the broadcast transaction is no request's transaction: no ceremony approved it",
            )
            return result
        result.request_id = match.request_id
        self._claimed_request(broadcast, match.request_id, result)
        signers = self._signers(match, result)
        self._approved_by(match, signers, result)
        return result

    def _claimed_request(
        self, broadcast: BroadcastEvidence, request_id: str, result: BroadcastResult
    ) -> None:
        claimed = broadcast.request_id
        if claimed != request_id and claimed in self._request_ids:
            self._fail(
                result,
                f"filed under request {claimed}, but it is request {request_id}'s transaction",
            )
        elif claimed != request_id:
            note = (
                "broadcast request ids in the coordinator evidence do not name requests "
                "(matched by transaction instead)"
            )
            if note not in self.notes:
                self.notes.append(note)

    def _signers(self, match: Match, result: BroadcastResult) -> frozenset[bytes]:
        """Keys whose signatures in the final transaction verify, input by input."""
        keys, problems = value(match.signed)
        for i, problem in problems:
            self._fail(result, f"input {i}: {problem}", request_id=match.request_id)
        signers = frozenset(keys)
        result.signers = sorted(self._hex(k) for k in signers)
        return signers

    def _hex(self, key: bytes) -> str:
        """A signing key in hex, one copy per key (a few keys sign every broadcast)."""
        text = self._key_hex.get(key)
        if text is None:
            text = key.hex()
            if len(self._key_hex) < 4096:
                self._key_hex[key] = text
        return text

    def _approved_by(
        self, match: Match, signers: frozenset[bytes], result: BroadcastResult
    ) -> None:
        """Each appliance whose key signed approved this request exactly once."""
        rid = match.request_id
        appliances = sorted(
            {self.index.appliance_keys[k] for k in signers if k in self.index.appliance_keys}
        )
        if not appliances:
            self._fail(result, "no appliance key signed it", request_id=rid)
        for appliance in appliances:
            replay = self.appliances.get(appliance)
            if replay is None:
                self._unmatched.add(appliance)
                self._fail(
                    result,
                    "signed by an appliance whose journal was not given",
                    appliance=appliance,
                    request_id=rid,
                )
                continue
            approved = replay.approved.get(match.request_hash, [])
            if len(approved) != 1:
                self._fail(
                    result,
                    f"its key signed, but its journal holds {len(approved)} "
                    "approvals of this request (exactly one expected)",
                    appliance=appliance,
                    request_id=rid,
                )
            for ceremony in approved:
                ceremony.broadcast, ceremony.height = result.txid, result.height
                result.approved_by.append(f"{appliance} seq {ceremony.seq}")
                for signer in sorted(signers):
                    problem = self._key_problem(replay, ceremony, signer)
                    if problem is not None:
                        self._fail(
                            result,
                            f"the broadcast transaction is {problem} (approval "
                            f"at seq {ceremony.seq})",
                            appliance=appliance,
                            request_id=rid,
                        )

    def _key_problem(
        self, replay: ApplianceReplay, ceremony: Ceremony, pubkey: bytes
    ) -> str | None:
        """For a key of ``replay``'s station (by its journal, or by the wallets' members),
        why it may not have signed at the ceremony's seq; None for anyone else's key."""
        ours = replay.keys.registered(pubkey) or self.index.appliance_keys.get(pubkey) == replay.id
        if not ours:
            return None
        account = self.index.accounts.get(pubkey, pubkey)  # a bip32 child stands for its account
        return replay.keys.signing_problem(account, ceremony.keys, ceremony.seq)

    def _station_key(
        self,
        replay: ApplianceReplay,
        ceremony: Ceremony,
        pubkey: bytes,
        check: str,
        prefix: str,
        request_id: str,
    ) -> None:
        problem = self._key_problem(replay, ceremony, pubkey)
        if problem is not None:
            replay.add(
                check,
                f"{prefix} {problem}",
                seq=ceremony.seq,
                ceremony=ceremony,
                request_id=request_id,
            )
