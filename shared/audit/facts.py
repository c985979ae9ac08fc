"""What the checks need of each request and broadcast, derived once, where it is parsed.

A request's PSBTs are decoded once, by whoever parses the coordinator evidence (a worker
process for a long evidence, see :mod:`shared.audit.evidence`), and everything the checks
later ask of them is derived right there: its hash recomputed, the transaction's digest
and txid, the coins and scripts it spends, what a transcript must show of it, each
response's partial signatures checked, the signature hashes its broadcast must be signed
over. What comes out (:class:`RequestEvidence`, :class:`BroadcastEvidence`) holds bytes,
text and numbers only, no PSBT, so a year of requests costs the replay little memory, and
the process judging them does no decoding and no elliptic-curve arithmetic it can avoid.

Each value is exactly what the checks computed from the PSBT before (the test suite holds
the two to each other); one that cannot be computed is kept as :class:`Failed` and raised
where the check asks for it, as the computation itself raised there before.
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Callable, Iterable
from functools import cached_property, partial
from typing import Any, NamedTuple, TypeVar

from shared.bitcoin import ecdsa
from shared.bitcoin.bip32 import HARDENED
from shared.bitcoin.encoding import compact_size, hash160, hash256
from shared.bitcoin.script import ScriptError, iter_ops
from shared.bitcoin.sighash import SIGHASH_ALL, SighashCache
from shared.bitcoin.tx import Transaction
from shared.journal import Entry, Record, receipt_problem
from shared.psbt import Psbt, PsbtError
from shared.psbt.fields import PSBT_GLOBAL_PROPRIETARY
from shared.psbt.model import PsbtInput, PsbtOutput
from shared.psbt.roles import valid_signatures
from shared.psbt.scripts import SpendKind, spend_info
from shared.request import (
    SUBTYPE_RECEIPT,
    RequestError,
    proprietary_keydata,
    read_receipts,
    read_request,
    request_hash,
)

T = TypeVar("T")


class ReadOnlyPsbt(Psbt):
    """A PSBT that is only read, never changed (the coordinator's evidence): its unsigned
    transaction, which the checks ask for a dozen times (each hash, each signature hash,
    the fee, the outputs), is assembled once. Treat what it returns as read-only."""

    @cached_property
    def unsigned_tx(self) -> Transaction:
        return Psbt.unsigned_tx.fget(self)  # type: ignore[attr-defined, no-any-return]


class Failed:
    """A value whose computation raised: :func:`value` raises the same error again."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = _portable(error)

    def __reduce__(self) -> tuple[Any, ...]:
        return (Failed, (self.error,))

    def __eq__(self, other: object) -> bool:
        return type(other) is Failed and (type(self.error), str(self.error)) == (
            type(other.error),
            str(other.error),
        )

    def __hash__(self) -> int:
        return hash(str(self.error))


def _portable(error: BaseException) -> BaseException:
    """The error itself when it survives pickling (it crosses from a worker process), else
    a ValueError with its message (what the command line shows of it is the same)."""
    try:
        again = pickle.loads(pickle.dumps(error))
    except Exception:
        return ValueError(str(error))
    return (
        again if type(again) is type(error) and str(again) == str(error) else ValueError(str(error))
    )


def value(found: T | Failed) -> T:
    """``found``, or raise the error that computing it raised."""
    if isinstance(found, Failed):
        raise found.error
    return found


def derive(compute: Callable[[], T]) -> T | Failed:
    try:
        return compute()
    except Exception as exc:  # raised again where the value is used
        return Failed(exc)


# -- receipts -----------------------------------------------------------------------------


class ReceiptFacts(NamedTuple):
    """A receipt (a journal entry) as the coordinator check reads it."""

    appliance_id: str
    seq: int
    event: str
    decision: str | None
    hash: bytes
    signature: bytes
    request: bytes | None  # subjects["request"]
    problem: str | None  # receipt_problem(record, wallet=False)

    @classmethod
    def of(cls, entry: Entry) -> ReceiptFacts:
        record: Record = entry.record
        return cls(
            record.appliance_id,
            record.seq,
            record.event,
            record.decision,
            record.hash(),
            entry.signature,
            record.subjects.get("request"),
            receipt_problem(record, wallet=False),
        )

    def verify(self, audit_pubkey: bytes) -> bool:
        """:meth:`shared.journal.Entry.verify`."""
        return ecdsa.verify(audit_pubkey, self.signature, self.hash)


# -- requests -----------------------------------------------------------------------------


class Recomputed(NamedTuple):
    """A request's hash recomputed from its PSBT (``digest``), or why it cannot be."""

    request_id: str | None
    digest: bytes | None
    problem: str | None


def recompute_psbt(psbt: Psbt) -> Recomputed:
    """Recompute a request's hash from its own PSBT and metadata."""
    try:
        meta = read_request(psbt)
        return Recomputed(meta.request_id.hex(), request_hash(psbt, meta), None)
    except RequestError as exc:
        return Recomputed(None, None, str(exc))


class ChangeFacts(NamedTuple):
    """What re-deriving change needs of a request's transaction
    (:meth:`shared.audit.change.ChangeDeriver.rederive`): each input's spent script (None
    when the PSBT does not give it) and each output's amount and script, with the
    derivation indexes the PSBT hints at (unhardened last path elements)."""

    inputs: tuple[tuple[bytes | None, tuple[int, ...]], ...]
    outputs: tuple[tuple[int, bytes, tuple[int, ...]], ...] | Failed


def hinted(origins: Iterable[object]) -> tuple[int, ...]:
    """Unhardened last path elements of derivation hints: where to look, nothing more."""
    indexes = []
    for origin in origins:
        path = getattr(origin, "path", None)
        if path and isinstance(path[-1], int) and path[-1] < HARDENED:
            indexes.append(path[-1])
    return tuple(indexes)


def _input_script(psbt: Psbt, index: int) -> bytes | None:
    try:
        utxo = psbt.input_utxo(index)
    except (IndexError, ValueError):
        return None  # a previous transaction that does not hold the coin
    return None if utxo is None else utxo.script_pubkey


def change_facts(psbt: Psbt) -> ChangeFacts:
    inputs = tuple(
        (_input_script(psbt, i), hinted(node.bip32_derivations.values()))
        for i, node in enumerate(psbt.inputs)
    )

    def outputs() -> tuple[tuple[int, bytes, tuple[int, ...]], ...]:
        maps = psbt.outputs
        return tuple(
            (
                out.value,
                out.script_pubkey,
                hinted(maps[j].bip32_derivations.values()) if j < len(maps) else (),
            )
            for j, out in enumerate(psbt.unsigned_tx.outputs)
        )

    return ChangeFacts(inputs, derive(outputs))


def highest_hint(psbts: Iterable[Psbt]) -> int:
    """The largest unhardened last path element in any derivation hint, or -1."""
    highest = -1
    for psbt in psbts:
        maps: list[PsbtInput | PsbtOutput] = [*psbt.inputs, *psbt.outputs]
        for node in maps:
            for origin in node.bip32_derivations.values():
                if origin.path and origin.path[-1] < HARDENED:
                    highest = max(highest, origin.path[-1])
    return highest


class SpendFacts(NamedTuple):
    """How a request's input is spent (:class:`shared.psbt.scripts.SpendInfo`) and its
    SIGHASH_ALL signature hash: what the broadcast transaction's signatures are checked
    against."""

    kind: SpendKind
    segwit: bool
    keys: tuple[bytes, ...]
    threshold: int
    key_hash: bytes | None
    has_script: bool  # a witness or redeem script: multisig items end with it
    digest: bytes | Failed

    def may_sign(self, pubkey: bytes) -> bool:
        if self.key_hash is not None:
            return hash160(pubkey) == self.key_hash
        return pubkey in self.keys


#: spend_info's refusals, as the broadcast check names them
SPEND_ERRORS = (PsbtError, ScriptError, IndexError)


class _Sighashes(SighashCache):
    """A SighashCache that keeps each digest: a request's signature hashes are asked for
    again by each response's partial signatures (a response for the same transaction
    shares its request's) and by the broadcast check."""

    def __init__(self, tx: Transaction) -> None:
        super().__init__(tx)
        self._digests: dict[tuple[Any, ...], bytes] = {}

    def segwit_v0(self, index: int, script_code: bytes, amount: int, hash_type: int) -> bytes:
        key = (True, index, script_code, amount, hash_type)
        found = self._digests.get(key)
        if found is None:
            found = self._digests[key] = super().segwit_v0(index, script_code, amount, hash_type)
        return found

    def legacy(self, index: int, script_code: bytes, hash_type: int) -> bytes:
        key = (False, index, script_code, hash_type)
        found = self._digests.get(key)
        if found is None:
            found = self._digests[key] = super().legacy(index, script_code, hash_type)
        return found


def _spends(psbt: Psbt, sighashes: _Sighashes | Failed) -> tuple[SpendFacts | str | Failed, ...]:
    cache = value(sighashes)  # SighashCache(psbt.unsigned_tx), or the error it raised
    out: list[SpendFacts | str | Failed] = []
    for i in range(len(psbt.inputs)):
        try:
            info = spend_info(psbt, i)
        except SPEND_ERRORS as exc:
            out.append(str(exc))
            continue
        except Exception as exc:
            out.append(Failed(exc))
            continue
        out.append(
            SpendFacts(
                info.kind,
                info.segwit,
                info.keys,
                info.threshold,
                info.key_hash,
                info.witness_script is not None or info.redeem_script is not None,
                derive(partial(info.digest, cache, SIGHASH_ALL)),
            )
        )
    return tuple(out)


class PartialFacts(NamedTuple):
    """One input of a response that carries partial signatures: the problem checking them
    raised (``spend_info`` or a signature that does not verify), else the script it spends
    and each signing key with whether the input's script lets it sign."""

    input_index: int
    problem: str | Failed | None
    script: bytes | None
    keys: tuple[tuple[bytes, bool], ...]


class ResponseFacts(NamedTuple):
    """A signed response: whether it is for the request's transaction (``same``), its
    partial signatures checked, the receipts it carries (their digests; parsed only when
    one is not among the request's own receipts, see the coordinator check), and the keys
    that signed each input (sorted)."""

    same: bool | Failed
    partial: tuple[PartialFacts, ...] | Failed
    carried: tuple[bytes, ...]
    read: tuple[tuple[bytes, ReceiptFacts], ...] | str | None
    signers: tuple[tuple[int, tuple[bytes, ...]], ...]


_RECEIPT_PREFIX = proprietary_keydata(SUBTYPE_RECEIPT)


def _partial(
    response: Psbt, verified: set[tuple[bytes, bytes, bytes]], shared: _Sighashes | None
) -> tuple[PartialFacts, ...]:
    """``shared``: the request's signature hashes, when the response is for its very
    transaction (the same digests)."""
    cache = shared if shared is not None else _Sighashes(response.unsigned_tx)
    out = []
    for i, inp in enumerate(response.inputs):
        sigs = inp.partial_sigs
        if not sigs:
            continue
        problem: str | Failed | None = None
        script = None
        keys: tuple[tuple[bytes, bool], ...] = tuple((k, False) for k in sigs)
        try:
            info = spend_info(response, i)
            valid = valid_signatures(response, info, cache)
        except PsbtError as exc:
            problem = str(exc)
        except Exception as exc:
            problem = Failed(exc)
        else:
            script = info.utxo.script_pubkey
            keys = tuple((k, info.may_sign(k)) for k in sigs)
            for pubkey, sig in valid.items():  # verified: the broadcast need not again
                verified.add((pubkey, sig[:-1], info.digest(cache, sig[-1])))
        out.append(PartialFacts(i, problem, script, keys))
    return tuple(out)


def response_facts(
    response: Psbt,
    unsigned: bytes | Failed,
    own: set[bytes],
    verified: set[tuple[bytes, bytes, bytes]],
    sighashes: _Sighashes | Failed | None = None,
) -> ResponseFacts:
    """``unsigned``: the request's unsigned transaction bytes; ``own``: the digests of the
    request's receipts (a response carrying only those needs no receipt parsed)."""
    mine = derive(lambda: response.unsigned_tx.serialize(include_witness=False))
    same: bool | Failed = (
        mine if type(mine) is Failed else (type(unsigned) is not Failed and mine == unsigned)
    )
    records = response.globals.entries(PSBT_GLOBAL_PROPRIETARY)
    carried = tuple(hashlib.sha256(v).digest() for k, v in records if k.startswith(_RECEIPT_PREFIX))
    read: tuple[tuple[bytes, ReceiptFacts], ...] | str | None = None
    if not all(c in own for c in carried):
        try:
            raws = read_receipts(response)
            read = tuple(
                (hashlib.sha256(raw).digest(), ReceiptFacts.of(Entry.from_bytes(raw)))
                for raw in raws
            )
        except (RequestError, ValueError) as exc:
            read = str(exc)
    signers = tuple(
        (i, tuple(sorted(inp.partial_sigs)))
        for i, inp in enumerate(response.inputs)
        if inp.partial_sigs
    )
    shared = sighashes if same is True and type(sighashes) is _Sighashes else None
    return ResponseFacts(
        same, derive(lambda: _partial(response, verified, shared)), carried, read, signers
    )


def shape(tx: Transaction) -> bytes:
    """Everything a signature commits to except the signatures: what stays when a txid is
    malleated (scriptSig changes) yet the payment is the same."""
    parts = [tx.version.to_bytes(4, "little"), compact_size(len(tx.inputs))]
    for txin in tx.inputs:
        parts += [txin.prevout.serialize(), txin.sequence.to_bytes(4, "little")]
    parts.append(compact_size(len(tx.outputs)))
    parts += [out.serialize() for out in tx.outputs]
    parts.append(tx.locktime.to_bytes(4, "little"))
    return b"".join(parts)


def _shown(psbt: Psbt) -> tuple[list[str], list[tuple[bytes, int]], int | None]:
    tx = psbt.unsigned_tx
    return (
        [str(txin.prevout) for txin in tx.inputs],
        [(o.script_pubkey, o.value) for o in tx.outputs],
        psbt.fee(),
    )


class Receipt(NamedTuple):
    """A request's receipt as the coordinator kept it: filed under ``appliance_id``,
    ``where`` names its field, ``digest`` is the SHA-256 of its bytes and ``parsed`` what
    they say (or why they are no journal entry: :attr:`entry` raises then, naming
    ``entry_where``)."""

    appliance_id: str
    where: str
    entry_where: str
    digest: bytes
    parsed: ReceiptFacts | str

    @property
    def entry(self) -> ReceiptFacts:
        if isinstance(self.parsed, str):
            from shared.audit.evidence import EvidenceError  # here: evidence imports this

            raise EvidenceError(f"{self.entry_where}: not a journal entry: {self.parsed}")
        return self.parsed


class RequestEvidence(NamedTuple):
    """A request as the checks read it (see the module docstring). ``unsigned`` is the
    SHA-256 of the unsigned transaction's bytes (no witnesses): equal digests, equal
    transactions; it is also the ``psbt`` subject a signing record names."""

    batch: str
    request_id: str
    kind: str
    replaces: str | None
    request_hash: bytes
    txid: str
    fee: int
    state: str
    receipts: tuple[Receipt, ...]
    recomputed: Recomputed
    unsigned: bytes | Failed
    unsigned_txid: str | Failed
    input_scripts: tuple[bytes | None, ...] | Failed  # for each input, the script it spends
    spent_scripts: tuple[bytes | None, ...]  # the same, None where the PSBT lacks the coin
    shown: tuple[list[str], list[tuple[bytes, int]], int | None] | Failed
    responses: tuple[ResponseFacts, ...]
    shape: bytes | Failed  # SHA-256 of the transaction's shape (chain.shape)

    @property
    def psbt_hash(self) -> bytes:
        """SHA-256 of the unsigned transaction, as a signing record's ``psbt`` subject."""
        return value(self.unsigned)


class Signing(NamedTuple):
    """What checking the signatures of a request's broadcast needs: how each input is
    spent (or why spend_info refuses it) with its signature hash, and every partial
    signature its responses verified, as (public key, signature, digest)."""

    request_id: str
    request_hash: bytes
    spends: tuple[SpendFacts | str | Failed, ...] | Failed
    verified: frozenset[tuple[bytes, bytes, bytes]]


def request_facts(
    head: tuple[str, str, str, str | None, bytes, str, int, str],
    receipts: tuple[Receipt, ...],
    psbt: Psbt,
    responses: list[Psbt],
) -> tuple[RequestEvidence, ChangeFacts, int, Signing]:
    """The facts of a parsed request (``head``: its fields from batch to state), what
    re-deriving its change needs, its highest hinted derivation index, and what checking
    its broadcast's signatures needs."""
    unsigned_bytes = derive(lambda: psbt.unsigned_tx.serialize(include_witness=False))
    if isinstance(unsigned_bytes, Failed):
        unsigned: bytes | Failed = unsigned_bytes
        txid: str | Failed = unsigned_bytes
    else:
        unsigned = hashlib.sha256(unsigned_bytes).digest()
        txid = hash256(unsigned_bytes)[::-1].hex()
    own = {r.digest for r in receipts}
    verified: set[tuple[bytes, bytes, bytes]] = set()
    sighashes = derive(lambda: _Sighashes(psbt.unsigned_tx))
    checked = tuple(response_facts(r, unsigned_bytes, own, verified, sighashes) for r in responses)
    facts = RequestEvidence(
        *head,
        receipts,
        recompute_psbt(psbt),
        unsigned,
        txid,
        derive(lambda: tuple(None if u is None else u.script_pubkey for u in psbt.input_utxos())),
        tuple(_input_script(psbt, i) for i in range(len(psbt.inputs))),
        derive(lambda: _shown(psbt)),
        checked,
        derive(lambda: hashlib.sha256(shape(psbt.unsigned_tx)).digest()),
    )
    signing = Signing(
        head[1], head[4], derive(lambda: _spends(psbt, sighashes)), frozenset(verified)
    )
    return facts, change_facts(psbt), highest_hint([psbt, *responses]), signing


# -- broadcasts ---------------------------------------------------------------------------


class BroadcastEvidence(NamedTuple):
    """A broadcast as the checks read it: the coordinator's fields, and what its raw
    transaction is (txid and wtxid of the bytes, ``unsigned``: SHA-256 of the transaction
    without witnesses, ``shape``: SHA-256 of :func:`shared.audit.chain.shape`, and each
    input's witness and scriptSig); ``position`` is its place in the evidence."""

    position: int
    request_id: str | None
    txid: str
    wtxid: str
    state: str
    block_hash: str | None
    height: int | None
    unsigned: bytes
    tx_txid: str
    tx_wtxid: str
    shape: bytes
    inputs: tuple[tuple[tuple[bytes, ...], bytes], ...]


def broadcast_facts(
    index: int, head: tuple[str | None, str, str, str, str | None, int | None], tx: Transaction
) -> BroadcastEvidence:
    request_id, txid, wtxid, state, block_hash, height = head
    unsigned_bytes = tx.serialize(include_witness=False)
    tx_txid = hash256(unsigned_bytes)[::-1].hex()
    tx_wtxid = hash256(tx.serialize())[::-1].hex()
    return BroadcastEvidence(
        index,
        request_id,
        txid,
        wtxid,
        state,
        block_hash,
        height,
        hashlib.sha256(unsigned_bytes).digest(),
        txid if tx_txid == txid else tx_txid,
        wtxid if tx_wtxid == wtxid else tx_wtxid,
        hashlib.sha256(shape(tx)).digest(),
        tuple((tuple(txin.witness), txin.script_sig) for txin in tx.inputs),
    )


class Match(NamedTuple):
    """The request a broadcast is the transaction of (the first with that transaction),
    and the broadcast's signatures checked against its signature hashes: (keys whose
    signature verifies, (input, problem) for each input that fails), or the error the
    check raised (raised again when the broadcast is judged)."""

    request_id: str
    request_hash: bytes
    signed: tuple[tuple[bytes, ...], tuple[tuple[int, str], ...]] | Failed


def match(
    signing: Signing, broadcast: BroadcastEvidence, keys: dict[bytes, bytes] | None = None
) -> Match:
    """Check ``broadcast``'s signatures as the request of ``signing``'s transaction
    (``keys`` interns the signing keys: a few keys sign everything)."""
    found = _signatures(signing, broadcast)
    if not isinstance(found, Failed) and keys is not None:
        signers, problems = found
        found = (tuple(keys.setdefault(k, k) for k in signers), problems)
    return Match(signing.request_id, signing.request_hash, found)


def _signatures(
    signing: Signing, broadcast: BroadcastEvidence
) -> tuple[tuple[bytes, ...], tuple[tuple[int, str], ...]] | Failed:
    """The keys whose signatures in ``broadcast`` verify against the request's signature
    hashes, and each input's problem; an error the check raised is kept, to be raised in
    its turn (where the broadcast is judged)."""
    try:
        spends = value(signing.spends)
        signers: set[bytes] = set()
        problems = []
        for i, (witness, script_sig) in enumerate(broadcast.inputs):
            try:
                if i >= len(spends):
                    raise IndexError("list index out of range")  # as spend_info raised it
                spend = spends[i]
                if isinstance(spend, Failed):
                    raise spend.error
                keys, problem = _input_signers(spend, witness, script_sig, signing.verified)
            except SPEND_ERRORS as exc:
                keys, problem = set(), str(exc)
            if problem:
                problems.append((i, problem))
            signers |= keys
        return tuple(signers), tuple(problems)
    except Exception as exc:  # raised when the broadcast is judged, where it was before
        return Failed(exc)


def _input_signers(
    spend: SpendFacts | str,
    witness: tuple[bytes, ...],
    script_sig: bytes,
    verified: frozenset[tuple[bytes, bytes, bytes]],
) -> tuple[set[bytes], str | None]:
    """(keys that validly signed the input, problem or None)."""
    if isinstance(spend, str):
        return set(), spend  # spend_info refused the input
    items = list(witness) if spend.segwit else [d or b"" for _, d in iter_ops(script_sig)]
    if spend.kind is not SpendKind.MULTISIG:
        if len(items) < 2 or not spend.may_sign(items[-1]):
            return set(), "no signature by the input's key"
        ok = _verifies(spend, items[-1], items[-2], verified)
        return ({items[-1]}, None) if ok else (set(), "the signature does not verify")
    sigs = items[1:-1] if spend.has_script else items[1:]
    signed = {key for sig in sigs for key in spend.keys if _verifies(spend, key, sig, verified)}
    if len(signed) < spend.threshold:
        return signed, f"{len(signed)} valid signature(s), {spend.threshold} required"
    return signed, None


def _verifies(
    spend: SpendFacts, pubkey: bytes, sig: bytes, verified: frozenset[tuple[bytes, bytes, bytes]]
) -> bool:
    if len(sig) < 9 or sig[-1] != SIGHASH_ALL:
        return False
    digest = value(spend.digest)
    if (pubkey, sig[:-1], digest) in verified:
        return True  # a response's partial signature: verified where it was parsed
    return ecdsa.verify(pubkey, sig[:-1], digest)


__all__ = [
    "BroadcastEvidence",
    "ChangeFacts",
    "Failed",
    "PartialFacts",
    "Receipt",
    "ReceiptFacts",
    "Recomputed",
    "RequestEvidence",
    "ResponseFacts",
    "SpendFacts",
    "broadcast_facts",
    "change_facts",
    "derive",
    "highest_hint",
    "hinted",
    "recompute_psbt",
    "request_facts",
    "value",
]
