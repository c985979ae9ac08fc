"""Batch builder: a payout CSV becomes one unsigned PSBT signing request (DESIGN 2.2).

All or nothing: the CSV is validated first (every bad row reported), then coin selection,
coin locking, change address, the batch, its payouts and the request are written in one
``BEGIN IMMEDIATE`` transaction. Two processes building batches at the same moment are
serialised by SQLite's write lock, and a coin is locked with a conditional update, so no
coin ever lands in two batches; a crash anywhere leaves either the whole batch or nothing.

The PSBT carries what every signer needs and nothing more: ``non_witness_utxo`` *and*
``witness_utxo`` on every input (the appliance refuses segwit inputs without the full
previous transaction), witness scripts and key origins for our inputs and change,
nSequence 0xFFFFFFFD (replaceable, so a stuck payout can be fee-bumped by a new request),
nLockTime at the current height (as Bitcoin Core does, against fee sniping), and the
request metadata in Coldstation's proprietary global field. Payee references stay here:
the PSBT carries only their SHA-256 (DESIGN 8).

The rest of a batch's life is here too: cancel, re-show, fee bump, and at the end the
functions each ``batch`` command calls with the label a person typed.
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from online_coordinator import faults
from online_coordinator.chain.rpc import BitcoinCoreRPC
from online_coordinator.coinselect import Candidate, Selection, SelectionError, select_coins
from online_coordinator.config import Config
from online_coordinator.fees import (
    INCREMENTAL_RELAY_FEE_RATE,
    FeeChoice,
    FeeError,
    check_fee_cap,
    check_fee_within_cap,
    fee_choice,
)
from online_coordinator.finish import (
    BroadcastResult,
    FinishError,
    ImportResult,
    broadcast,
    import_response,
)
from online_coordinator.key_states import blocked_descriptors
from online_coordinator.payouts import Payout, PayoutsError, parse_payouts
from online_coordinator.store import Store, now, outcome
from online_coordinator.wallet import (
    AddressSlot,
    Wallet,
    WalletError,
    load_wallet,
    next_address,
    require_ready,
)
from shared.bitcoin.amount import dust_threshold, fee_at_rate
from shared.bitcoin.descriptor import DerivedOutput
from shared.bitcoin.encoding import compact_size
from shared.bitcoin.size import (
    MAX_STANDARD_TX_WEIGHT,
    InputShape,
    base_weight,
    estimate_vsize,
    input_weight,
    output_weight,
    vsize_of,
)
from shared.bitcoin.tx import SEQUENCE_RBF, OutPoint, Transaction, TxIn, TxOut
from shared.psbt import fields as f
from shared.psbt.model import Psbt, PsbtMap
from shared.request import (
    RequestMetadata,
    attach_assertion,
    attach_request,
    read_request,
    request_hash,
)
from shared.requester import Assertion, RequesterError, assertion_challenge

COINBASE_MATURITY = 100
#: A label names files (``LABEL.psbt``), so it is kept to characters no file system or
#: shell treats specially, and starts with a letter or digit (never ``.``, ``..`` or ``-``).
LABEL_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
TX_VERSION = 2
#: Fee rate assumed for spending change later (Bitcoin Core's -consolidatefeerate default).
LONG_TERM_FEE_RATE = 10_000


class BatchError(ValueError):
    """A batch that cannot be built; nothing was written."""


@dataclass(frozen=True)
class BuiltRequest:
    batch_id: int
    label: str
    request_row: int
    psbt: Psbt
    meta: RequestMetadata
    request_hash: bytes
    fee: int
    fee_rate: int
    selection: Selection
    change: AddressSlot | None


class _Coin(NamedTuple):
    """A chosen coin: read only for the coins selection picked (see :func:`_chosen`)."""

    txid: str
    vout: int
    value: int
    descriptor_id: int
    change: bool
    address_index: int  # not ``index``: that is tuple's method

    @property
    def outpoint(self) -> OutPoint:
        return OutPoint.from_hex(self.txid, self.vout)


def _shape(derived: DerivedOutput, threshold: int | None) -> InputShape:
    return InputShape(derived.redeem_script, derived.witness_script, threshold or 1, True)


def _candidates(store: Store, wallet: Wallet, tip: int) -> list[Candidate]:
    """Every spendable coin as (row id, value, input weight): only what selection needs.

    Read off the ``utxos_spendable`` index in a stable order (height, txid, vout), as plain
    tuples: a 100,000-coin wallet costs one index scan and one small tuple per coin.
    Outpoints and derivation paths are read for the chosen coins alone (:func:`_chosen`).
    Coins of a key its station suspended or archived are left out (module key_states): the
    station would refuse the request.
    A wallet whose descriptors all weigh the same per input (a key pool of one script
    type, a multisig) has the weight filled in by SQLite.
    """
    weights = _weights(wallet)
    blocked = blocked_descriptors(store, wallet.id, wallet.descriptors, spending=True)
    where = (
        "FROM utxos WHERE wallet_id = ? AND state = 'available' AND (coinbase = 0 OR "
        "height <= ?) ORDER BY height, txid, vout"
    )
    cursor = store.db.cursor()
    cursor.row_factory = None  # tuples, not sqlite3.Row
    mature = tip - COINBASE_MATURITY + 1
    if len(set(weights.values())) == 1 and not blocked:
        weight = next(iter(weights.values()))
        cursor.execute(f"SELECT rowid, value, ? {where}", (weight, wallet.id, mature))
        return list(map(Candidate._make, cursor))
    rows = store.all("SELECT id, descriptor_id FROM addresses WHERE wallet_id = ?", wallet.id)
    weight_of = {
        r["id"]: weights[r["descriptor_id"]] for r in rows if r["descriptor_id"] not in blocked
    }
    cursor.execute(f"SELECT rowid, value, address_id {where}", (wallet.id, mature))
    return [
        Candidate(rowid, value, weight_of[address])
        for rowid, value, address in cursor
        if address in weight_of
    ]


def _chosen(store: Store, selection: Selection) -> list[_Coin]:
    """The selected coins with their outpoints and derivation paths, in selection order
    (row ids are stable inside the batch's transaction)."""
    coins = []
    for candidate in selection.chosen:
        row = store.row(
            "SELECT u.txid, u.vout, u.value, a.descriptor_id, a.change, a.idx FROM utxos u "
            "JOIN addresses a ON a.id = u.address_id WHERE u.rowid = ?",
            candidate.key,
        )
        coins.append(_Coin(row[0], row[1], row[2], row[3], bool(row[4]), row[5]))
    return coins


def _weights(wallet: Wallet) -> dict[int, int]:
    """Input weight per descriptor: the same at every index (compressed keys, same script)."""
    return {
        descriptor_id: input_weight(_shape(descriptor.derive(0), descriptor.threshold))
        for descriptor_id, descriptor in wallet.descriptors
    }


def build_request(
    store: Store,
    wallet: Wallet,
    csv: bytes,
    *,
    label: str,
    purpose: str,
    requester: str,
    fee_rate: int,
    tip: int,
    expiry_seconds: int,
) -> BuiltRequest:
    """Validate, select, lock and record; see the module docstring. Raises BatchError."""
    payouts = parse_payouts(csv, wallet.network)
    require_ready(store, wallet)
    _check_label(label)
    with outcome("nothing was created"), store.write():
        if store.one("SELECT 1 FROM batches WHERE label = ?", label):
            raise BatchError(f"a batch labelled {label!r} already exists")
        selection = _select(wallet, _candidates(store, wallet, tip), payouts, fee_rate)
        coins = _chosen(store, selection)
        change = None
        if selection.change:
            change = next_address(store, wallet, change=True, note=f"change of batch {label}")
        tx = _transaction(coins, selection, payouts, change, tip)
        psbt = _psbt(store, wallet, tx, coins, change)
        meta = _metadata(label, requester, purpose, wallet, payouts, expiry_seconds, tip)
        psbt = attach_request(psbt, meta)
        digest = request_hash(psbt, meta)
        batch_id, request_row = _record(
            store, wallet, csv, label, purpose, payouts, psbt, meta, digest, selection
        )
        _lock(store, coins, request_row)
    faults.point("create.recorded")
    return BuiltRequest(
        batch_id, label, request_row, psbt, meta, digest, selection.fee, fee_rate, selection, change
    )


def _check_label(label: str) -> None:
    if not LABEL_PATTERN.fullmatch(label):
        raise BatchError(
            f"batch label {label!r} refused: use 1..64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (it names the request files)"
        )


def output_path(out: Path, label: str, suffix: str) -> Path:
    """``out/<label><suffix>``, never anywhere else.

    Labels made before the label rule may hold any printable character; those are written
    under a name with every other character replaced by ``_``. Whatever the label, the
    file's folder is ``out`` itself (no ``..``, no absolute path, no separator).
    """
    name = label if LABEL_PATTERN.fullmatch(label) else _safe_name(label)
    target = out / f"{name}{suffix}"
    if target.parent != out or os.sep in name or (os.altsep and os.altsep in name):
        raise BatchError(f"batch label {label!r} cannot name a file in {out}")
    return target


def _safe_name(label: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]", "_", label).lstrip(".-") or "batch"
    return name[:64]


def _select(
    wallet: Wallet, candidates: list[Candidate], payouts: list[Payout], fee_rate: int
) -> Selection:
    weights = _weights(wallet)
    outputs = [TxOut(p.amount, p.script_pubkey) for p in payouts]
    change_descriptor = wallet.descriptors[0][1]
    change_script = change_descriptor.derive(0, change_descriptor.branch_count >= 2)
    change_out = TxOut(0, change_script.script_pubkey)
    try:
        return select_coins(
            candidates,
            payments=sum(p.amount for p in payouts),
            base_weight=base_weight(outputs, 1, segwit=True),  # coinselect adds the input count
            change_output_weight=output_weight(change_out) + _count_growth(len(outputs)),
            change_spend_weight=weights[wallet.descriptors[0][0]],
            fee_rate=fee_rate,
            long_term_fee_rate=min(LONG_TERM_FEE_RATE, fee_rate),
            min_change=dust_threshold(change_out.script_pubkey),
            max_weight=MAX_STANDARD_TX_WEIGHT,
        )
    except SelectionError as exc:
        raise BatchError(f"coin selection: {exc}") from exc


def _count_growth(outputs: int) -> int:
    """Weight the output count's CompactSize gains when a change output is added."""
    return (len(compact_size(outputs + 1)) - len(compact_size(outputs))) * 4


def _transaction(
    coins: list[_Coin],
    selection: Selection,
    payouts: list[Payout],
    change: AddressSlot | None,
    tip: int,
) -> Transaction:
    inputs = [TxIn(coin.outpoint, b"", SEQUENCE_RBF) for coin in coins]
    outputs = [TxOut(p.amount, p.script_pubkey) for p in payouts]
    if change is not None:
        outputs.append(TxOut(selection.change, change.script))
    return Transaction(TX_VERSION, inputs, outputs, tip)


def _psbt(
    store: Store, wallet: Wallet, tx: Transaction, coins: list[_Coin], change: AddressSlot | None
) -> Psbt:
    psbt = Psbt.from_unsigned_tx(tx)
    previous: dict[str, tuple[bytes, Transaction]] = {}
    for inp, coin in zip(psbt.inputs, coins, strict=True):
        derived = wallet.descriptor(coin.descriptor_id).derive(coin.address_index, coin.change)
        raw, prev = _previous(store, coin.txid, previous)
        inp.set(f.PSBT_IN_NON_WITNESS_UTXO, raw)
        inp.set(f.PSBT_IN_WITNESS_UTXO, prev.outputs[coin.vout].serialize())
        _scripts_and_origins(
            inp,
            derived,
            redeem=f.PSBT_IN_REDEEM_SCRIPT,
            witness=f.PSBT_IN_WITNESS_SCRIPT,
            origin=f.PSBT_IN_BIP32_DERIVATION,
        )
    if change is not None:
        derived = wallet.descriptor(change.descriptor_id).derive(change.index, change.change)
        _scripts_and_origins(
            psbt.outputs[-1],
            derived,
            redeem=f.PSBT_OUT_REDEEM_SCRIPT,
            witness=f.PSBT_OUT_WITNESS_SCRIPT,
            origin=f.PSBT_OUT_BIP32_DERIVATION,
        )
    return psbt


def _previous(
    store: Store, txid: str, cache: dict[str, tuple[bytes, Transaction]]
) -> tuple[bytes, Transaction]:
    """A coin's full previous transaction, read and parsed once per batch."""
    if txid not in cache:
        raw = bytes(store.row("SELECT raw FROM transactions WHERE txid = ?", txid)["raw"])
        cache[txid] = (raw, Transaction.parse(raw))
    return cache[txid]


def _scripts_and_origins(
    target: object, derived: DerivedOutput, *, redeem: int, witness: int, origin: int
) -> None:
    if derived.redeem_script is not None:
        target.set(redeem, derived.redeem_script)  # type: ignore[attr-defined]
    if derived.witness_script is not None:
        target.set(witness, derived.witness_script)  # type: ignore[attr-defined]
    for pubkey, key_origin in derived.keys:
        target.set(origin, key_origin.to_psbt_bytes(), keydata=pubkey)  # type: ignore[attr-defined]


def _metadata(
    label: str,
    requester: str,
    purpose: str,
    wallet: Wallet,
    payouts: list[Payout],
    expiry_seconds: int,
    tip: int,
) -> RequestMetadata:
    """The request's metadata; ``tip`` (nLockTime, against fee sniping) is declared so the
    station can bound the lock by it and show it."""
    created = now()
    return RequestMetadata(
        request_id=os.urandom(16),
        batch_id=label,
        requester=requester,
        created=created,
        expiry=created + expiry_seconds,
        purpose=purpose,
        network=wallet.network.label,
        references=tuple(
            (i, hashlib.sha256(p.reference.encode()).digest()) for i, p in enumerate(payouts)
        ),
        tip_height=tip,
    )


def _record(
    store: Store,
    wallet: Wallet,
    csv: bytes,
    label: str,
    purpose: str,
    payouts: list[Payout],
    psbt: Psbt,
    meta: RequestMetadata,
    digest: bytes,
    selection: Selection,
) -> tuple[int, int]:
    db = store.db
    batch_id = _insert(
        db,
        "INSERT INTO batches (wallet_id, label, csv_sha256, purpose, state, "
        "created) VALUES (?, ?, ?, ?, 'awaiting_signatures', ?)",
        (wallet.id, label, hashlib.sha256(csv).digest(), purpose, now()),
    )
    db.executemany(
        "INSERT INTO payouts (batch_id, line, address, amount, reference) VALUES (?, ?, ?, ?, ?)",
        [(batch_id, p.line, p.address, p.amount, p.reference) for p in payouts],
    )
    tx = psbt.unsigned_tx
    vsize = vsize_of(selection.weight)
    request_row = _insert(
        db,
        "INSERT INTO requests (batch_id, request_id, kind, replaces, unsigned_psbt, request_hash,"
        " txid, fee, fee_rate, created, expiry, state) VALUES (?, ?, ?, NULL, ?, ?, ?, ?, ?, ?,"
        " ?, 'open')",
        (
            batch_id,
            meta.request_id,
            meta.kind,
            psbt.serialize(),
            digest,
            tx.txid_hex,
            selection.fee,
            selection.fee * 1000 // vsize,
            meta.created,
            meta.expiry,
        ),
    )
    store.event(
        "batch_created",
        f"batch {label}: {len(payouts)} payouts, "
        f"{len(selection.chosen)} inputs, fee {selection.fee} sat, request "
        f"{meta.request_id.hex()}",
        batch_id=batch_id,
    )
    return batch_id, request_row


def _insert(db: sqlite3.Connection, sql: str, params: tuple) -> int:
    return int(db.execute(sql, params).lastrowid or 0)


def _lock(store: Store, coins: list[_Coin], request_row: int) -> None:
    """Lock each chosen coin; a coin someone else locked first aborts the whole batch."""
    for coin in coins:
        locked = store.db.execute(
            "UPDATE utxos SET state = 'locked', request_id = ? WHERE txid = ? AND vout = ? "
            "AND state = 'available'",
            (request_row, coin.txid, coin.vout),
        ).rowcount
        if locked != 1:
            raise BatchError(f"coin {coin.outpoint} was taken by another batch; try again")


def release_coins(store: Store, request_row: int) -> int:
    """Unlock the coins of a cancelled request (inside the caller's transaction)."""
    return store.db.execute(
        "UPDATE utxos SET state = 'available', request_id = NULL "
        "WHERE request_id = ? AND state = 'locked'",
        (request_row,),
    ).rowcount


__all__ = [
    "BatchError",
    "BuiltRequest",
    "WalletError",
    "build_request",
    "cancel_batch",
    "create_batch",
    "find_batch",
    "output_path",
    "release_coins",
]


# -- cancel ---------------------------------------------------------------------------------


def cancel_batch(store: Store, rpc: BitcoinCoreRPC, label: str) -> int:
    """Cancel a batch that never reached a node; returns the coins released.

    Refused once a broadcast was attempted (``sendrawtransaction`` was called, even if its
    reply was lost: the payment may be in a mempool), and refused while any coin of the
    batch is spent in the node's mempool or a block (the signed transaction may have been
    sent by someone else). Only then are the coins released; a recorded but never-attempted
    send is marked abandoned.
    """
    batch = find_batch(store, label)
    batch_id = batch["id"]
    attempted = store.one(
        "SELECT b.txid FROM broadcasts b JOIN requests r ON r.id = b.request_id "
        "WHERE r.batch_id = ? AND b.sends > 0 AND b.state != 'abandoned'",
        batch_id,
    )
    if attempted is not None:
        raise BatchError(
            f"batch {batch['label']}: a broadcast of {attempted['txid']} was attempted, so it "
            "may be in a mempool or a block: too late to cancel (let it confirm, or bump it)"
        )
    if batch["state"] not in ("awaiting_signatures", "signed", "sending"):
        raise BatchError(
            f"batch {batch['label']} is {batch['state']}: too late to cancel "
            "(a fee bump or a new batch is the way forward)"
        )
    requests = store.all(
        "SELECT id, unsigned_psbt FROM requests WHERE batch_id = ? AND state IN "
        "('open', 'signed', 'broadcast')",
        batch_id,
    )
    for request in requests:
        for txin in Psbt.parse(bytes(request["unsigned_psbt"])).unsigned_tx.inputs:
            outpoint = txin.prevout
            if rpc.unspent_confirmations(outpoint.txid_hex, outpoint.vout) is None:
                raise BatchError(
                    f"batch {batch['label']}: coin {outpoint} is already spent in the node's "
                    "mempool or a block, maybe by this batch's own signed transaction: not "
                    "cancelled; run `sync` to see where it went"
                )
    released = 0
    with outcome("nothing was cancelled"), store.write() as db:
        for request in requests:
            db.execute("UPDATE requests SET state = 'cancelled' WHERE id = ?", (request["id"],))
            db.execute(
                "UPDATE broadcasts SET state = 'abandoned' WHERE request_id = ?", (request["id"],)
            )
            released += release_coins(store, request["id"])
        db.execute("UPDATE batches SET state = 'cancelled' WHERE id = ?", (batch_id,))
        store.event(
            "batch_cancelled",
            f"batch {batch['label']} cancelled; {released} coin(s) released",
            batch_id=batch_id,
        )
    return released


# -- the requester's passkey assertion ---------------------------------------------------------


def attest_request(
    store: Store, label: str, credential_json: bytes, actor: str | None = None
) -> OpenRequest:
    """``batch attest``: the requester's passkey assertion over the open request's hash
    (``navigator.credentials.get`` with the hash as challenge, as JSON), carried in the
    request's PSBT from now on: ``batch export`` and ``batch show`` hand it to the station,
    which verifies whose passkey made it (shared.requester). Checked here only as far as
    the coordinator can: a ``webauthn.get`` over this very request's hash. A second
    assertion replaces the first. The request hash, and so what officers approve, does
    not change."""
    batch = find_batch(store, label)
    row = store.one(
        "SELECT * FROM requests WHERE batch_id = ? AND state = 'open' ORDER BY id DESC LIMIT 1",
        batch["id"],
    )
    if row is None:
        raise BatchError(f"batch {label} has no open request to attest (it is {batch['state']})")
    digest = bytes(row["request_hash"])
    try:
        assertion = Assertion.from_webauthn_json(credential_json)
        challenge = assertion_challenge(assertion)
    except RequesterError as exc:
        raise BatchError(f"the requester's assertion: {exc}") from None
    if challenge != digest:
        raise BatchError(
            f"the requester's assertion is over another request: its challenge is not batch "
            f"{label}'s request hash {digest.hex()[:16]}..."
        )
    psbt = attach_assertion(Psbt.parse(bytes(row["unsigned_psbt"])), assertion)
    with store.write() as db:
        db.execute(
            "UPDATE requests SET unsigned_psbt = ? WHERE id = ?", (psbt.serialize(), row["id"])
        )
        store.event(
            "request_attested",
            f"batch {label}: the requester's passkey assertion is attached",
            batch_id=batch["id"],
            actor=actor,
        )
    return OpenRequest(label, psbt.serialize(), digest)


# -- recovering a signed output the station never delivered ----------------------------------


@dataclass(frozen=True)
class ReshowRequest:
    """What the officers need to find, in the station's journal, the approval of a request
    whose signed output never reached the coordinator."""

    label: str
    request_id: str
    request_hash: bytes
    txid: str
    psbt: Psbt


def reshow_request(store: Store, label: str) -> ReshowRequest:
    """The batch's open request, to be presented to the station again *unchanged*.

    The station recognises the request id it already signed: it must not sign again (that
    is refused as ``replayed``) but show the signed PSBT it journaled, with no new
    approvals and no second count toward any limit. The coordinator then imports it like
    any response: it must be the same transaction, and the same response twice counts once.
    """
    batch = find_batch(store, label)
    request = store.one(
        "SELECT * FROM requests WHERE batch_id = ? AND state = 'open' ORDER BY id DESC LIMIT 1",
        batch["id"],
    )
    if request is None:
        raise BatchError(
            f"batch {batch['label']} is {batch['state']}: only a request still waiting for its "
            "signed output can be asked for again"
        )
    return ReshowRequest(
        batch["label"],
        bytes(request["request_id"]).hex(),
        bytes(request["request_hash"]),
        request["txid"],
        Psbt.parse(bytes(request["unsigned_psbt"])),
    )


# -- fee bump -------------------------------------------------------------------------------


def bump_batch(config: Config, store: Store, label: str, fee_rate: int) -> BuiltRequest:
    """``batch bump``: a replacement request at ``fee_rate`` (sat/kvB), held to the same
    configured cap as a new batch, both as asked and as it must really pay (FeeError)."""
    batch = find_batch(store, label)
    wallet = load_wallet(
        store, store.row("SELECT name FROM wallets WHERE id = ?", batch["wallet_id"])["name"]
    )
    check_fee_cap(fee_rate, config.max_fee_rate)
    first = store.row(
        "SELECT unsigned_psbt FROM requests WHERE batch_id = ? ORDER BY id LIMIT 1", batch["id"]
    )
    return build_replacement(
        store,
        wallet,
        batch["id"],
        fee_rate=fee_rate,
        max_fee_rate=config.max_fee_rate,
        # the batch's own requester: they ask again, and sign the new hash
        requester=read_request(Psbt.parse(bytes(first["unsigned_psbt"]))).requester,
        expiry_seconds=config.expiry_hours * 3600,
    )


def build_replacement(
    store: Store,
    wallet: Wallet,
    batch_id: int,
    *,
    fee_rate: int,
    max_fee_rate: int,
    requester: str,
    expiry_seconds: int,
) -> BuiltRequest:
    """A fee bump as a new, separately approved request (REQUIREMENTS 38).

    Same coins and payouts; only the change shrinks. The request is of kind
    ``replacement`` and names the txid it replaces, so the appliance's conflicting-spend
    check lets it through while refusing undeclared double spends. Its fee must stay
    within ``max_fee_rate``, whatever BIP-125 makes it pay (FeeError, nothing written).
    """
    batch = store.one("SELECT * FROM batches WHERE id = ?", batch_id)
    original = store.one(
        "SELECT r.*, b.txid AS sent_txid FROM requests r JOIN broadcasts b ON "
        "b.request_id = r.id WHERE r.batch_id = ? AND (b.state = 'mempool' OR "
        "(b.state = 'sending' AND b.sends > 0)) ORDER BY r.id DESC LIMIT 1",
        batch_id,
    )
    if batch is None or original is None:
        raise BatchError("only a broadcast, unconfirmed batch can be fee-bumped")
    old = Psbt.parse(bytes(original["unsigned_psbt"]))
    psbt, fee = _bumped(wallet, old, original["fee"], fee_rate, max_fee_rate)
    meta = RequestMetadata(
        request_id=os.urandom(16),
        batch_id=batch["label"],
        requester=requester,
        created=now(),
        expiry=now() + expiry_seconds,
        purpose=batch["purpose"],
        network=wallet.network.label,
        kind="replacement",
        replaces=(bytes.fromhex(original["sent_txid"])[::-1],),
        references=read_references(old),
        tip_height=old.unsigned_tx.locktime or None,  # the lock the original declared
    )
    psbt = attach_request(psbt, meta)
    digest = request_hash(psbt, meta)
    tx = psbt.unsigned_tx
    with outcome("no replacement request was created"), store.write() as db:
        row = _insert(
            db,
            "INSERT INTO requests (batch_id, request_id, kind, replaces, unsigned_psbt, "
            "request_hash, txid, fee, fee_rate, created, expiry, state) VALUES (?, ?, "
            "'replacement', ?, ?, ?, ?, ?, ?, ?, ?, 'open')",
            (
                batch_id,
                meta.request_id,
                original["id"],
                psbt.serialize(),
                digest,
                tx.txid_hex,
                fee,
                fee_rate,
                meta.created,
                meta.expiry,
            ),
        )
        store.event(
            "fee_bump",
            f"batch {batch['label']}: replacement request "
            f"{meta.request_id.hex()} pays {fee} sat instead of {original['fee']}",
            batch_id=batch_id,
        )
    selection = Selection((), tx.outputs[-1].value, fee, 0, "replacement")
    return BuiltRequest(
        batch_id, batch["label"], row, psbt, meta, digest, fee, fee_rate, selection, None
    )


def read_references(psbt: Psbt) -> tuple[tuple[int, bytes], ...]:
    """The payee reference hashes a request declared, which its replacement declares too."""
    return read_request(psbt).references


def _bumped(
    wallet: Wallet, old: Psbt, old_fee: int, fee_rate: int, max_fee_rate: int
) -> tuple[Psbt, int]:
    """A copy of ``old`` (without its request record) whose change pays the new fee."""
    tx = old.unsigned_tx
    change_index = _change_index(old)
    shapes = [_input_shape(wallet, inp) for inp in old.inputs]
    vsize = estimate_vsize(tx, shapes)
    fee = max(
        fee_at_rate(vsize, fee_rate), old_fee + fee_at_rate(vsize, INCREMENTAL_RELAY_FEE_RATE)
    )
    check_fee_within_cap(fee, vsize, max_fee_rate)
    change = tx.outputs[change_index].value - (fee - old_fee)
    if change < dust_threshold(tx.outputs[change_index].script_pubkey):
        raise BatchError(f"the change output cannot pay a {fee} sat fee; build a new batch")
    outputs = list(tx.outputs)
    outputs[change_index] = TxOut(change, outputs[change_index].script_pubkey)
    new_tx = Transaction(
        tx.version, [TxIn(i.prevout, b"", i.sequence) for i in tx.inputs], outputs, tx.locktime
    )
    psbt = Psbt.from_unsigned_tx(new_tx)
    old_maps: list[PsbtMap] = [*old.inputs, *old.outputs]
    new_maps: list[PsbtMap] = [*psbt.inputs, *psbt.outputs]
    for src, dst in zip(old_maps, new_maps, strict=True):
        for key, value in src.raw_records().items():
            dst.set_record(key, value)
    return psbt, fee


def _change_index(psbt: Psbt) -> int:
    """Our change is the output with derivation data (the builder adds it to change only)."""
    found = [i for i, out in enumerate(psbt.outputs) if out.bip32_derivations]
    if len(found) != 1:
        raise BatchError("the request has no change output to take the higher fee from")
    return found[0]


def _input_shape(wallet: Wallet, inp: object) -> InputShape:
    threshold = wallet.descriptors[0][1].threshold
    return InputShape(inp.redeem_script, inp.witness_script, threshold or 1, True)  # type: ignore[attr-defined]


# -- a batch by its label: what the commands call ----------------------------------------------


@dataclass(frozen=True)
class CreatedBatch:
    """A new batch's request, and the fee rate it pays with the reason for that rate."""

    built: BuiltRequest
    fee: FeeChoice


@dataclass(frozen=True)
class OpenRequest:
    """The request a batch is waiting on (open, or signed and not yet broadcast)."""

    label: str
    unsigned_psbt: bytes
    request_hash: bytes

    @property
    def psbt(self) -> Psbt:
        return Psbt.parse(self.unsigned_psbt)


def find_batch(store: Store, label: str) -> sqlite3.Row:
    """The batch a person names by its label (BatchError when there is none)."""
    row = store.one("SELECT * FROM batches WHERE label = ?", label)
    if row is None:
        raise BatchError(f"no batch labelled {label!r}")
    return row


def create_batch(
    config: Config,
    store: Store,
    wallet_name: str,
    csv: bytes,
    *,
    csv_name: str,
    label: str,
    purpose: str,
    fee_rate: int | None,
    requester: str | None = None,
) -> CreatedBatch:
    """``batch create``: the fee rate (as given, the node's estimate or the fallback, never
    above the cap; :func:`online_coordinator.fees.choose_fee_rate`), then
    :func:`build_request`. Every refusal says that nothing was created. ``requester``: who
    asks (the signed-in web user), else the configuration's ``requester``."""
    wallet = load_wallet(store, wallet_name)
    try:
        fee = fee_choice(config, fee_rate)
        built = build_request(
            store,
            wallet,
            csv,
            label=label,
            purpose=purpose,
            requester=requester or config.requester,
            fee_rate=fee.rate,
            tip=config.rpc().block_count(),
            expiry_seconds=config.expiry_hours * 3600,
        )
    except PayoutsError as exc:  # every bad row, one per line
        raise BatchError(f"{csv_name}: nothing was created:\n{exc}") from exc
    except (FeeError, BatchError) as exc:
        raise BatchError(f"nothing was created: {exc}") from exc
    return CreatedBatch(built, fee)


def open_request(store: Store, label: str) -> OpenRequest:
    """``batch export`` and ``batch show``: the request the batch is waiting on."""
    row = store.one(
        "SELECT * FROM requests WHERE batch_id = ? AND state IN ('open', 'signed') "
        "ORDER BY id DESC LIMIT 1",
        find_batch(store, label)["id"],
    )
    if row is None:
        raise BatchError("the batch has no open request")
    return OpenRequest(label, bytes(row["unsigned_psbt"]), bytes(row["request_hash"]))


def import_signed(store: Store, label: str, data: bytes, source: str, how: str) -> ImportResult:
    """``batch import``: one signed response (:func:`online_coordinator.finish.
    import_response`); a refusal names the source it came from, as one of several."""
    batch = find_batch(store, label)
    try:
        return import_response(store, batch["id"], data, f"{how}:{source}")
    except FinishError as exc:
        raise FinishError(f"{source}: {exc}") from exc


def broadcast_batch(store: Store, rpc: BitcoinCoreRPC, label: str) -> BroadcastResult:
    """``batch broadcast``: :func:`online_coordinator.finish.broadcast` of the batch."""
    return broadcast(store, rpc, find_batch(store, label)["id"])
