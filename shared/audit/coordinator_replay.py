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
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from shared.audit import transcript as tr
from shared.audit.evidence import (
    BroadcastEvidence,
    CoordinatorEvidence,
    RequestEvidence,
    WalletEvidence,
)
from shared.audit.journal_replay import ApplianceReplay
from shared.audit.model import BroadcastResult, Ceremony, Finding
from shared.audit.wallets import WalletIndex
from shared.bitcoin import ecdsa
from shared.bitcoin.script import ScriptError, iter_ops
from shared.bitcoin.sighash import SIGHASH_ALL, SighashCache
from shared.bitcoin.tx import Transaction
from shared.journal import Entry, receipt_problem
from shared.psbt import Psbt, PsbtError
from shared.psbt.fields import PROPRIETARY
from shared.psbt.roles import valid_signatures
from shared.psbt.scripts import SpendInfo, SpendKind, spend_info
from shared.request import (
    SUBTYPE_RECEIPT,
    RequestError,
    proprietary_keydata,
    read_receipts,
    read_request,
    request_hash,
)


@dataclass(frozen=True)
class Recomputed:
    """A request's hash recomputed from its PSBT (``digest``), or why it cannot be."""

    request_id: str | None
    digest: bytes | None
    problem: str | None


def recompute(request: RequestEvidence) -> Recomputed:
    """Recompute one request's hash from its own PSBT and metadata."""
    try:
        meta = read_request(request.psbt)
        return Recomputed(meta.request_id.hex(), request_hash(request.psbt, meta), None)
    except RequestError as exc:
        return Recomputed(None, None, str(exc))


def verified_requests(
    requests: Sequence[RequestEvidence], recomputed: Sequence[Recomputed]
) -> dict[bytes, RequestEvidence]:
    """Requests by hash, only those whose hash recomputes from their PSBT: a journal record
    naming that hash then names exactly that transaction and the coins it spends."""
    verified: dict[bytes, RequestEvidence] = {}
    for request, again in zip(requests, recomputed, strict=True):
        if again.digest == request.request_hash:
            verified.setdefault(request.request_hash, request)
    return verified


@dataclass
class _Unmatched:
    """Receipts of appliances whose bundle was not given: one finding per appliance."""

    counts: dict[str, int] = field(default_factory=dict)

    def add(self, appliance: str) -> None:
        self.counts[appliance] = self.counts.get(appliance, 0) + 1


class CoordinatorReplay:
    """Run check 4; read ``findings`` and ``broadcasts`` afterwards."""

    def __init__(self, evidence: CoordinatorEvidence, appliances: Mapping[str, ApplianceReplay],
                 index: WalletIndex,
                 recomputed: Sequence[Recomputed] | None = None) -> None:  # fmt: skip
        self.evidence = evidence
        self._recomputed = recomputed
        self.appliances = appliances
        self.index = index
        self.findings: list[Finding] = []
        self.broadcasts: list[BroadcastResult] = []
        self.notes: list[str] = []
        self._unmatched = _Unmatched()
        self._by_unsigned: dict[bytes, RequestEvidence] = {}
        self._by_hash: dict[bytes, RequestEvidence] = {}
        self._seen: set[tuple[str, bytes]] = set()
        self._request_ids = {r.request_id for r in evidence.requests}

    def add(self, check: str, message: str, **where: object) -> Finding:
        finding = Finding(check, message, **where)  # type: ignore[arg-type]
        self.findings.append(finding)
        return finding

    def run(self) -> CoordinatorReplay:
        for wallet in self.evidence.wallets:
            self._wallet_receipts(wallet)
        recomputed = self._recomputed
        if recomputed is None or len(recomputed) != len(self.evidence.requests):
            recomputed = [recompute(r) for r in self.evidence.requests]
        for request, again in zip(self.evidence.requests, recomputed, strict=True):
            self._request(request, again)
        self._unknown_approvals()
        self._broadcasts()
        for appliance, count in sorted(self._unmatched.counts.items()):
            self.add("receipt", f"{count} receipt(s) cannot be matched to a journal: no bundle "
                     "was given for this appliance", appliance=appliance)  # fmt: skip
        return self

    # -- receipts ---------------------------------------------------------------------------

    def _receipt(self, entry: Entry, claimed: str | None, where: str,
                 **context: object) -> None:  # fmt: skip
        """One receipt: filed under its own appliance, signed by the pinned audit key, and
        a record of that appliance's journal (same seq, same record hash)."""
        record = entry.record
        appliance = record.appliance_id
        where_seq = {"appliance": appliance, "seq": record.seq, **context}
        if claimed is not None and claimed != appliance:
            self.add("receipt", f"{where}: filed under {claimed!r} but signed as {appliance!r}",
                     **where_seq)  # fmt: skip
        replay = self.appliances.get(appliance)
        key = self.evidence.appliances.get(appliance)
        if key is None:
            self.add("receipt", f"{where}: from an appliance the coordinator never pinned",
                     **where_seq)  # fmt: skip
        if replay is None:
            self._unmatched.add(appliance)
            if key is not None and not entry.verify(key):
                self.add("receipt", f"{where}: does not verify under the pinned audit key",
                         **where_seq)  # fmt: skip
            return
        if replay.same_entry(entry) and replay.bundle.audit_key == key:
            return  # the journal's own entry: verified with the journal, under this key
        digest = record.hash()
        if key is not None and not ecdsa.verify(key, entry.signature, digest):
            self.add("receipt", f"{where}: does not verify under the pinned audit key",
                     **where_seq)  # fmt: skip
        if replay.hash_at(record.seq) != digest:
            self.add("receipt", f"{where}: {record.event} record seq {record.seq} is not in the "
                     "appliance's journal", **where_seq)  # fmt: skip

    def _wallet_receipts(self, wallet: WalletEvidence) -> None:
        texts = {str(d) for d in wallet.descriptors}
        for member in wallet.members:
            for kind, entry in (("export", member.export_receipt), ("pin", member.pin_receipt)):
                if entry is None:
                    continue
                where = f"wallet {wallet.name} {kind} receipt"
                record = entry.record
                located = {"appliance": record.appliance_id, "seq": record.seq}
                self._receipt(entry, member.appliance_id, where)
                problem = receipt_problem(record, wallet=True)
                if problem is not None:
                    self.add("receipt", f"{where} is no valid receipt: {problem}", **located)
                named = record.details.get("descriptor")
                fits = member.key in str(named) if kind == "export" else named in texts
                events = ("wallet_exported",) if kind == "export" else ("wallet_exported",
                                                                         "wallet_pinned")
                if record.event not in events or not fits:
                    self.add("receipt", f"{where} does not record this wallet's descriptor",
                             **located)  # fmt: skip

    # -- requests ---------------------------------------------------------------------------

    def _request(self, request: RequestEvidence, again: Recomputed) -> None:
        rid = request.request_id
        unsigned = request.psbt.unsigned_tx.serialize(include_witness=False)
        self._by_unsigned.setdefault(unsigned, request)
        self._by_hash.setdefault(request.request_hash, request)
        self._request_hash(request, again)
        if request.txid != request.psbt.unsigned_tx.txid_hex:
            self.add("request", f"txid field {request.txid} is not the PSBT's "
                     f"{request.psbt.unsigned_tx.txid_hex}", request_id=rid)  # fmt: skip
        self._inputs_are_ours(request)
        for receipt in request.receipts:
            self._approval_receipt(request, receipt.entry, receipt.appliance_id, receipt.where)
            self._seen.add((rid, receipt.raw))
        for number, response in enumerate(request.responses):
            self._response(request, number, response, unsigned)
        self._link_ceremonies(request)

    def _request_hash(self, request: RequestEvidence, again: Recomputed) -> None:
        rid = request.request_id
        if again.digest is None:
            self.add("request", f"the request hash cannot be recomputed: {again.problem}",
                     request_id=rid)  # fmt: skip
            return
        if again.digest != request.request_hash:
            self.add("request", f"request hash {request.request_hash.hex()} does not recompute "
                     f"from the PSBT ({again.digest.hex()})", request_id=rid)  # fmt: skip
        if again.request_id != rid:
            self.add("request", f"the PSBT's request id is {again.request_id}",
                     request_id=rid)  # fmt: skip

    def _inputs_are_ours(self, request: RequestEvidence) -> None:
        psbt = request.psbt
        for i in range(len(psbt.inputs)):
            utxo = psbt.input_utxo(i)
            if utxo is None or self.index.wallet_of(utxo.script_pubkey) is None:
                self.add("request", f"input {i} spends a script no wallet descriptor derives",
                         request_id=request.request_id)  # fmt: skip

    def _response(self, request: RequestEvidence, number: int, response: Psbt,
                  unsigned: bytes) -> None:  # fmt: skip
        rid, where = request.request_id, f"response {number}"
        if response.unsigned_tx.serialize(include_witness=False) != unsigned:
            self.add("response", f"{where} is for another transaction", request_id=rid)
            return
        cache = SighashCache(response.unsigned_tx)
        for i, inp in enumerate(response.inputs):
            if inp.partial_sigs:
                self._partial_sigs(request, response, i, cache, where)
        self._response_receipts(request, response, where)

    def _response_receipts(self, request: RequestEvidence, response: Psbt, where: str) -> None:
        """Receipts the response carries; those already checked (the same bytes are in the
        request's receipts) are not parsed twice."""
        rid = request.request_id
        prefix = proprietary_keydata(SUBTYPE_RECEIPT)
        carried = [v for k, v in response.globals.entries(PROPRIETARY) if k.startswith(prefix)]
        if all((rid, raw) in self._seen for raw in carried):
            return
        try:
            raws = read_receipts(response)
            entries = [Entry.from_bytes(raw) for raw in raws]
        except (RequestError, ValueError) as exc:
            self.add("response", f"{where}: unreadable receipt: {exc}", request_id=rid)
            return
        for raw, entry in zip(raws, entries, strict=True):
            if (rid, raw) not in self._seen:
                self._seen.add((rid, raw))
                self._approval_receipt(request, entry, None, f"{where} receipt")

    def _partial_sigs(self, request: RequestEvidence, psbt: Psbt, i: int,
                      cache: SighashCache, where: str) -> None:  # fmt: skip
        rid = request.request_id
        try:
            info = spend_info(psbt, i)
            valid_signatures(psbt, info, cache)
        except PsbtError as exc:
            self.add("response", f"{where}: {exc}", request_id=rid)
            return
        owned = self.index.scripts.get(info.utxo.script_pubkey)
        for pubkey in psbt.inputs[i].partial_sigs:
            if not info.may_sign(pubkey) or owned is None or pubkey not in owned.keys:
                self.add("response", f"{where}: input {i} carries a signature by {pubkey.hex()}, "
                         "which is not a key of the wallet's script", request_id=rid)  # fmt: skip

    def _approval_receipt(self, request: RequestEvidence, entry: Entry, claimed: str | None,
                          where: str) -> None:  # fmt: skip
        rid = request.request_id
        self._receipt(entry, claimed, where, request_id=rid)
        record = entry.record
        problem = receipt_problem(record, wallet=False)
        if problem is not None:
            self.add("receipt", f"{where} is no valid receipt: {problem}",
                     appliance=record.appliance_id, seq=record.seq, request_id=rid)  # fmt: skip
        if record.event == "signing_decision" and \
                record.subjects.get("request") != request.request_hash:
            self.add("receipt", f"{where} approves another request hash",
                     appliance=record.appliance_id, seq=record.seq, request_id=rid)  # fmt: skip

    def _link_ceremonies(self, request: RequestEvidence) -> None:
        """Every journal decision on this request: the transcript shows the request's tx."""
        psbt_hash = hashlib.sha256(request.psbt.unsigned_tx.serialize()).digest()
        for replay in self.appliances.values():
            for ceremony in replay.by_request.get(request.request_hash, []):
                ceremony.coordinator_request = request.request_id
                self._ceremony_matches(replay, ceremony, request, psbt_hash)

    def _ceremony_matches(self, replay: ApplianceReplay, ceremony: Ceremony,
                          request: RequestEvidence, psbt_hash: bytes) -> None:  # fmt: skip
        if ceremony.psbt_hash is not None and ceremony.psbt_hash != psbt_hash:
            replay.add("ceremony", "the record's psbt hash is not the request's transaction",
                       seq=ceremony.seq, ceremony=ceremony, request_id=request.request_id)
        if ceremony.decision == "approved":
            for number, response in enumerate(request.responses):
                for i, node in enumerate(response.inputs):
                    for pubkey in sorted(node.partial_sigs):
                        self._station_key(replay, ceremony, pubkey, "ceremony",
                                          f"response {number}: input {i} is",
                                          request.request_id)  # fmt: skip
        if ceremony.transcript is None:
            return
        for problem in tr.compare_with_psbt(ceremony.transcript, request.psbt):
            replay.add("ceremony", f"transcript: {problem}", seq=ceremony.seq,
                       ceremony=ceremony, request_id=request.request_id)  # fmt: skip

    def _unknown_approvals(self) -> None:
        """An approval the coordinator never heard of is a signed transaction at large."""
        for replay in self.appliances.values():
            for digest, ceremonies in replay.approved.items():
                if digest not in self._by_hash:
                    for ceremony in ceremonies:
                        replay.add("ceremony", "approved and signed, but the request is not in "
                                   "the coordinator evidence", seq=ceremony.seq,
                                   ceremony=ceremony, txid=ceremony.txid)  # fmt: skip

    # -- broadcasts -------------------------------------------------------------------------

    def _broadcasts(self) -> None:
        seen: dict[str, int] = {}
        for broadcast in self.evidence.broadcasts:
            result = self._broadcast(broadcast)
            txid = broadcast.tx.txid_hex
            if txid in seen:
                self._fail(result, f"broadcast {seen[txid]} already holds this transaction")
            seen.setdefault(txid, broadcast.index)
            self.broadcasts.append(result)

    def _fail(self, result: BroadcastResult, message: str, **where: object) -> None:
        where.setdefault("txid", result.txid)
        result.findings.append(self.add("broadcast", message, **where))

    def _broadcast(self, broadcast: BroadcastEvidence) -> BroadcastResult:
        tx = broadcast.tx
        result = BroadcastResult(tx.txid_hex, broadcast.state, broadcast.height, None)
        if broadcast.txid != tx.txid_hex or broadcast.wtxid != tx.wtxid_hex:
            self._fail(result, f"recorded txid/wtxid {broadcast.txid}/{broadcast.wtxid} are not "
                       "those of its raw bytes")  # fmt: skip
        request = self._by_unsigned.get(tx.serialize(include_witness=False))
        if request is None:
            self._fail(result, "the broadcast transaction is no request's transaction: no "
                       "ceremony approved it")  # fmt: skip
            return result
        result.request_id = request.request_id
        self._claimed_request(broadcast, request, result)
        signers = self._signers(request, tx, result)
        self._approved_by(request, signers, result)
        return result

    def _claimed_request(self, broadcast: BroadcastEvidence, request: RequestEvidence,
                         result: BroadcastResult) -> None:  # fmt: skip
        claimed = broadcast.request_id
        if claimed != request.request_id and claimed in self._request_ids:
            self._fail(result, f"filed under request {claimed}, but it is request "
                       f"{request.request_id}'s transaction")  # fmt: skip
        elif claimed != request.request_id:
            note = ("broadcast request ids in the coordinator evidence do not name requests "
                    "(matched by transaction instead)")  # fmt: skip
            if note not in self.notes:
                self.notes.append(note)

    def _signers(self, request: RequestEvidence, tx: Transaction,
                 result: BroadcastResult) -> set[bytes]:  # fmt: skip
        """Keys whose signatures in the final transaction verify, input by input."""
        cache = SighashCache(request.psbt.unsigned_tx)
        signers: set[bytes] = set()
        for i in range(len(tx.inputs)):
            try:
                info = spend_info(request.psbt, i)
                keys, problem = _input_signers(info, tx, i, cache)
            except (PsbtError, ScriptError, IndexError) as exc:
                keys, problem = set(), str(exc)
            if problem:
                self._fail(result, f"input {i}: {problem}", request_id=request.request_id)
            signers |= keys
        result.signers = sorted(k.hex() for k in signers)
        return signers

    def _approved_by(self, request: RequestEvidence, signers: set[bytes],
                     result: BroadcastResult) -> None:  # fmt: skip
        """Each appliance whose key signed approved this request exactly once."""
        rid = request.request_id
        appliances = sorted({self.index.appliance_keys[k] for k in signers
                             if k in self.index.appliance_keys})  # fmt: skip
        if not appliances:
            self._fail(result, "no appliance key signed it", request_id=rid)
        for appliance in appliances:
            replay = self.appliances.get(appliance)
            if replay is None:
                self._unmatched.add(appliance)
                self._fail(result, "signed by an appliance whose journal was not given",
                           appliance=appliance, request_id=rid)  # fmt: skip
                continue
            approved = replay.approved.get(request.request_hash, [])
            if len(approved) != 1:
                self._fail(result, f"its key signed, but its journal holds {len(approved)} "
                           "approvals of this request (exactly one expected)",
                           appliance=appliance, request_id=rid)  # fmt: skip
            for ceremony in approved:
                ceremony.broadcast, ceremony.height = result.txid, result.height
                result.approved_by.append(f"{appliance} seq {ceremony.seq}")
                for signer in sorted(signers):
                    problem = self._key_problem(replay, ceremony, signer)
                    if problem is not None:
                        self._fail(result, f"the broadcast transaction is {problem} (approval "
                                   f"at seq {ceremony.seq})", appliance=appliance,
                                   request_id=rid)  # fmt: skip

    def _key_problem(self, replay: ApplianceReplay, ceremony: Ceremony,
                     pubkey: bytes) -> str | None:  # fmt: skip
        """For a key of ``replay``'s station (by its journal, or by the wallets' members),
        why it may not have signed at the ceremony's seq; None for anyone else's key."""
        ours = replay.keys.registered(pubkey) or self.index.appliance_keys.get(pubkey) == \
            replay.id  # fmt: skip
        if not ours:
            return None
        return replay.keys.signing_problem(pubkey, ceremony.keys, ceremony.seq)

    def _station_key(self, replay: ApplianceReplay, ceremony: Ceremony, pubkey: bytes,
                     check: str, prefix: str, request_id: str) -> None:  # fmt: skip
        problem = self._key_problem(replay, ceremony, pubkey)
        if problem is not None:
            replay.add(check, f"{prefix} {problem}", seq=ceremony.seq, ceremony=ceremony,
                       request_id=request_id)  # fmt: skip


def _input_signers(info: SpendInfo, tx: Transaction, i: int,
                   cache: SighashCache) -> tuple[set[bytes], str | None]:  # fmt: skip
    """(keys that validly signed input ``i``, problem or None)."""
    txin = tx.inputs[i]
    items = list(txin.witness) if info.segwit else [d or b"" for _, d in iter_ops(txin.script_sig)]
    if info.kind is not SpendKind.MULTISIG:
        if len(items) < 2 or not info.may_sign(items[-1]):
            return set(), "no signature by the input's key"
        ok = _verifies(info, cache, items[-1], items[-2])
        return ({items[-1]}, None) if ok else (set(), "the signature does not verify")
    has_script = info.witness_script is not None or info.redeem_script is not None
    sigs = items[1:-1] if has_script else items[1:]
    signed = {key for sig in sigs for key in info.keys if _verifies(info, cache, key, sig)}
    if len(signed) < info.threshold:
        return signed, f"{len(signed)} valid signature(s), {info.threshold} required"
    return signed, None


def _verifies(info: SpendInfo, cache: SighashCache, pubkey: bytes, sig: bytes) -> bool:
    if len(sig) < 9 or sig[-1] != SIGHASH_ALL:
        return False
    return ecdsa.verify(pubkey, sig[:-1], info.digest(cache, SIGHASH_ALL))
