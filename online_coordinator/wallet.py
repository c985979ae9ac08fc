"""Cold wallets on the coordinator: import from appliance exports, multisig assembly, the
address inventory (REQUIREMENTS 10).

An appliance exports its wallet as a descriptor (``ur:crypto-output``) plus a *receipt*:
its signed ``wallet_exported`` journal entry, which names the descriptor and the
appliance's audit key. Importing verifies the receipt under that key and pins the key for
the appliance id (trust on first use, confirmed by comparing the fingerprint printed here
with the one the appliance shows). A receipt must also be one the station wrote inside a
ceremony: never a deferred record, and with at least as many officers (``actors``) as the
quorum it records (``shared.journal.receipt_problem``). Every later receipt from that
appliance, including each signing receipt, must verify under the pinned key; a different
key for the same appliance id is refused.

Key pool. The HSM has no BIP-32, so an appliance key is a plain public key and
``wpkh(<key>)`` has exactly one address. A wallet may therefore hold several descriptors
(several exported keys, each pinned on the appliance): receive and change addresses are
taken from the pool in order, and an address is never handed out twice: when the pool is
exhausted, ``wallet address`` and ``batch create`` (for change) fail and say what to do,
and ``status`` warns below :data:`LOW_WATERMARK` fresh addresses first. A bip32-seed key
(``shared.key_models``) exports a ranged descriptor, as do multisig wallets with an xpub
cosigner: they get fresh receive and change addresses from the descriptor itself.

Multisig. ``wsh(sortedmulti(M, ...))`` is assembled from N appliance exports and any
standard descriptor keys (``[fingerprint/path]xpub/<0;1>/*``) of third-party signers. The
coordinator hands out no address of it until every appliance member has pinned it and sent
back its pin receipt: funds must never land where an appliance would refuse to sign.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from online_coordinator.key_states import blocked_descriptors
from online_coordinator.store import Store, now
from shared.bitcoin import ecdsa
from shared.bitcoin.address import Network, network_by_name
from shared.bitcoin.descriptor import Descriptor, DescriptorError
from shared.journal import Entry, JournalError, Record, audit_key_fingerprint, receipt_problem
from shared.wallet_formats import WalletFormatError, cosigner_key

if TYPE_CHECKING:
    from online_coordinator.chain.rpc import BitcoinCoreRPC

GAP_LIMIT = 20
#: ``status`` warns when a fixed-key wallet has fewer fresh addresses than this left.
LOW_WATERMARK = 3
MAX_POOL = 1000
#: A pin is confirmed by a ``wallet_pinned`` receipt (``pin-wallet``), or by the export
#: receipt of the wallet itself (a single-key wallet is pinned by its export).
PIN_EVENTS = frozenset({"wallet_pinned", "wallet_exported"})


class WalletError(ValueError):
    """An export, receipt or wallet operation that is refused."""


# -- appliance exports --------------------------------------------------------------------


@dataclass(frozen=True)
class ApplianceExport:
    """A descriptor an appliance vouched for, with the audit key its receipt verifies under."""

    appliance_id: str
    audit_key: bytes
    descriptor: Descriptor
    receipt: bytes

    @property
    def audit_fingerprint(self) -> str:
        return audit_key_fingerprint(self.audit_key)


def read_receipt_entry(data: bytes) -> Entry:
    try:
        return Entry.from_bytes(data)
    except JournalError as exc:
        raise WalletError(f"not an appliance receipt: {exc}") from exc


def read_export(descriptor: Descriptor, receipt: bytes) -> ApplianceExport:
    """Check that ``receipt`` is a signed ``wallet_exported`` record for ``descriptor``."""
    entry = read_receipt_entry(receipt)
    record = entry.record
    if record.event != "wallet_exported":
        raise WalletError(f"the receipt records {record.event!r}, not a wallet export")
    _usable_receipt(record)
    named = record.details.get("descriptor")
    vouched = _vouched_descriptor(named)
    if vouched is None or vouched != descriptor:
        raise WalletError(f"the receipt is for descriptor {named!r}, not {descriptor}")
    descriptor = vouched  # the station's own text (' or h): pins are compared as text
    audit_key = _audit_key(record.details.get("audit_key"))
    if not entry.verify(audit_key):
        raise WalletError(
            f"the receipt's signature does not verify under appliance "
            f"{record.appliance_id!r}'s audit key"
        )
    return ApplianceExport(record.appliance_id, audit_key, descriptor, receipt)


def _vouched_descriptor(named: object) -> Descriptor | None:
    """The descriptor a receipt names; the same wallet whichever hardened marker (``'`` or
    ``h``) its transport printed, so it is compared parsed, not as text."""
    if not isinstance(named, str):
        return None
    try:
        return Descriptor.parse(named)
    except DescriptorError:
        return None


def _usable_receipt(record: Record) -> None:
    """A wallet receipt the station wrote inside a ceremony of its quorum: never a deferred
    record, and carrying at least as many officers as the quorum it records (issue 12)."""
    problem = receipt_problem(record, wallet=True)
    if problem is not None:
        raise WalletError(
            f"the receipt from appliance {record.appliance_id!r} is refused: {problem}"
        )


def _audit_key(value: object) -> bytes:
    try:
        key = bytes.fromhex(value) if isinstance(value, str) else b""
    except ValueError:
        key = b""
    if len(key) != 33 or not ecdsa.is_valid_pubkey(key):
        raise WalletError("the receipt does not name a valid appliance audit key")
    return key


def parse_descriptor_source(data: bytes) -> Descriptor:
    """A descriptor from text (a received ``ur:crypto-output`` arrives as its text)."""
    try:
        return Descriptor.parse(data.decode("utf-8").strip(), require_checksum=False)
    except (UnicodeDecodeError, DescriptorError) as exc:
        raise WalletError(f"not a wallet descriptor: {exc}") from exc


def pin_appliance(store: Store, export: ApplianceExport) -> None:
    """Pin the appliance's audit key on first sight; refuse a different key later."""
    row = store.one("SELECT audit_key FROM appliances WHERE appliance_id = ?", export.appliance_id)
    if row is None:
        store.db.execute(
            "INSERT INTO appliances (appliance_id, audit_key, pinned) VALUES (?, ?, ?)",
            (export.appliance_id, export.audit_key, now()),
        )
        store.event(
            "appliance_pinned",
            f"appliance {export.appliance_id} audit key {export.audit_fingerprint} pinned",
        )
    elif bytes(row["audit_key"]) != export.audit_key:
        raise WalletError(
            f"appliance {export.appliance_id!r} is pinned with another audit key: "
            "refusing (a replaced appliance must be re-enrolled deliberately)"
        )


def pinned_audit_key(store: Store, appliance_id: str) -> bytes | None:
    row = store.one("SELECT audit_key FROM appliances WHERE appliance_id = ?", appliance_id)
    return bytes(row["audit_key"]) if row else None


# -- wallets --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Wallet:
    id: int
    name: str
    network: Network
    kind: str
    threshold: int | None
    birth_height: int
    descriptors: tuple[tuple[int, Descriptor], ...]  # (descriptor row id, descriptor)

    def descriptor(self, descriptor_id: int) -> Descriptor:
        return dict(self.descriptors)[descriptor_id]


def load_wallet(store: Store, name: str) -> Wallet:
    row = store.one("SELECT * FROM wallets WHERE name = ?", name)
    if row is None:
        names = [r["name"] for r in store.all("SELECT name FROM wallets ORDER BY name")]
        known = f" (known: {', '.join(names)})" if names else " (none imported yet)"
        raise WalletError(f"no wallet named {name!r}{known}")
    rows = store.all(
        "SELECT id, descriptor FROM descriptors WHERE wallet_id = ? ORDER BY position", row["id"]
    )
    descriptors = tuple((r["id"], Descriptor.parse(r["descriptor"])) for r in rows)
    return Wallet(
        row["id"],
        row["name"],
        network_by_name(row["network"]),
        row["kind"],
        row["threshold"],
        row["birth_height"],
        descriptors,
    )


def _create_wallet(
    store: Store,
    name: str,
    network: Network,
    kind: str,
    threshold: int | None,
    birth_height: int,
    descriptors: list[Descriptor],
) -> int:
    if not name or not name.isprintable() or len(name) > 64:
        raise WalletError("a wallet name must be 1..64 printable characters")
    if not 0 < len(descriptors) <= MAX_POOL:
        raise WalletError(f"a wallet holds 1..{MAX_POOL} descriptors")
    if len({str(d) for d in descriptors}) != len(descriptors):
        raise WalletError("the same descriptor is given twice")
    for descriptor in descriptors:
        kind_of_keys = descriptor.network
        if kind_of_keys is not None and kind_of_keys is not network.kind:
            raise WalletError(
                f"{descriptor} has {kind_of_keys.label} keys, the coordinator "
                f"runs on {network.label}"
            )
    try:
        cursor = store.db.execute(
            "INSERT INTO wallets (name, network, kind, threshold, birth_height, created) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (name, network.label, kind, threshold, birth_height, now()),
        )
    except sqlite3.IntegrityError:
        raise WalletError(f"a wallet named {name!r} already exists") from None
    wallet_id = int(cursor.lastrowid or 0)
    for position, descriptor in enumerate(descriptors):
        store.db.execute(
            "INSERT INTO descriptors (wallet_id, position, descriptor) VALUES (?, ?, ?)",
            (wallet_id, position, str(descriptor)),
        )
    return wallet_id


def import_single(
    store: Store, name: str, network: Network, exports: list[ApplianceExport], birth_height: int = 0
) -> Wallet:
    """A single-signature wallet: one appliance, one or more exported keys (a key pool)."""
    if not exports:
        raise WalletError("give at least one appliance export")
    appliances = {e.appliance_id for e in exports}
    if len(appliances) != 1:
        raise WalletError("a single-signature wallet's keys must all come from one appliance")
    with store.write():
        for export in exports:
            pin_appliance(store, export)
        wallet_id = _create_wallet(
            store, name, network, "single", None, birth_height, [e.descriptor for e in exports]
        )
        for export in exports:
            store.db.execute(
                "INSERT INTO wallet_members (wallet_id, appliance_id, key, role, export_receipt,"
                " pin_receipt) VALUES (?, ?, ?, 'appliance', ?, ?)",
                (
                    wallet_id,
                    export.appliance_id,
                    str(export.descriptor.keys[0]),
                    export.receipt,
                    export.receipt,
                ),
            )
        store.event(
            "wallet_imported",
            f"wallet {name}: {len(exports)} key(s) from appliance {exports[0].appliance_id}",
        )
        wallet = load_wallet(store, name)
        extend_inventory(store, wallet)
    return wallet


def add_keys(store: Store, wallet: Wallet, exports: list[ApplianceExport]) -> Wallet:
    """More exported keys for a single-signature wallet's pool (its fresh addresses ran
    low): each from the wallet's own appliance, each receipt verified and pinned as at
    import; addresses already handed out are untouched."""
    if wallet.kind != "single":
        raise WalletError(
            f"wallet {wallet.name} is a {wallet.kind} wallet: only a "
            "single-signature wallet takes more keys"
        )
    if not exports:
        raise WalletError("give at least one appliance export")
    members = store.all(
        "SELECT DISTINCT appliance_id FROM wallet_members WHERE wallet_id = ?", wallet.id
    )
    owners = {r["appliance_id"] for r in members} | {e.appliance_id for e in exports}
    if len(owners) != 1:
        raise WalletError("a single-signature wallet's keys must all come from one appliance")
    known = {str(d) for _, d in wallet.descriptors}
    total = len(known) + len(exports)
    if total > MAX_POOL:
        raise WalletError(f"a wallet holds 1..{MAX_POOL} descriptors ({total} asked)")
    with store.write():
        for position, export in enumerate(exports, start=len(wallet.descriptors)):
            text = str(export.descriptor)
            if text in known:
                raise WalletError(f"{text} is already in wallet {wallet.name}")
            known.add(text)
            pin_appliance(store, export)
            store.db.execute(
                "INSERT INTO descriptors (wallet_id, position, descriptor) VALUES (?, ?, ?)",
                (wallet.id, position, text),
            )
            store.db.execute(
                "INSERT INTO wallet_members (wallet_id, appliance_id, key, role, export_receipt,"
                " pin_receipt) VALUES (?, ?, ?, 'appliance', ?, ?)",
                (
                    wallet.id,
                    export.appliance_id,
                    str(export.descriptor.keys[0]),
                    export.receipt,
                    export.receipt,
                ),
            )
        store.event("wallet_keys_added", f"wallet {wallet.name}: {len(exports)} key(s) added")
        grown = load_wallet(store, wallet.name)
        extend_inventory(store, grown)
    return grown


def multisig_descriptor(
    threshold: int, exports: list[ApplianceExport], external_keys: list[str]
) -> Descriptor:
    """``wsh(sortedmulti(M, ...))`` from appliance keys and standard descriptor keys."""
    keys = []
    for export in exports:
        if export.descriptor.script_type.value != "wpkh":
            raise WalletError(
                f"appliance {export.appliance_id}: export a single key (wpkh), "
                "not a finished wallet, to build a multisig"
            )
        keys.append(str(export.descriptor.keys[0]))
    keys += [_cosigner(text) for text in external_keys]
    try:
        return Descriptor.parse(
            f"wsh(sortedmulti({threshold},{','.join(keys)}))", require_checksum=False
        )
    except DescriptorError as exc:
        raise WalletError(f"cannot build the multisig: {exc}") from exc


def _cosigner(text: str) -> str:
    """A cosigner key expression from whatever the cosigner's wallet exported."""
    try:
        return cosigner_key(text)
    except WalletFormatError as exc:
        raise WalletError(f"cosigner key {text.strip()[:80]!r}: {exc}") from exc


def create_multisig(
    store: Store,
    name: str,
    network: Network,
    threshold: int,
    exports: list[ApplianceExport],
    external_keys: list[str],
    birth_height: int = 0,
) -> tuple[Wallet, Descriptor]:
    """A pending M-of-N wallet; each appliance must pin it (see :func:`confirm_pin`)."""
    if len({e.appliance_id for e in exports}) != len(exports):
        raise WalletError(
            "two keys from one appliance: each appliance holds one key of a "
            "multisig wallet (REQUIREMENTS 26)"
        )
    if not exports:
        raise WalletError("a Coldstation multisig needs at least one appliance export")
    external_keys = [_cosigner(text) for text in external_keys]
    descriptor = multisig_descriptor(threshold, exports, external_keys)
    with store.write():
        for export in exports:
            pin_appliance(store, export)
        wallet_id = _create_wallet(
            store, name, network, "multisig", threshold, birth_height, [descriptor]
        )
        for export in exports:
            store.db.execute(
                "INSERT INTO wallet_members (wallet_id, appliance_id, key, role, export_receipt)"
                " VALUES (?, ?, ?, 'appliance', ?)",
                (wallet_id, export.appliance_id, str(export.descriptor.keys[0]), export.receipt),
            )
        for key in external_keys:
            store.db.execute(
                "INSERT INTO wallet_members (wallet_id, key, role) VALUES (?, ?, 'external')",
                (wallet_id, key.strip()),
            )
        store.event(
            "wallet_created",
            f"multisig {name}: {threshold}-of-"
            f"{len(exports) + len(external_keys)}, waiting for the appliances' pins",
        )
        wallet = load_wallet(store, name)
        extend_inventory(store, wallet)
    return wallet, descriptor


def confirm_pin(store: Store, wallet: Wallet, receipt: bytes) -> str:
    """Record an appliance's receipt that it pinned this wallet's descriptor."""
    entry = read_receipt_entry(receipt)
    record = entry.record
    key = pinned_audit_key(store, record.appliance_id)
    if key is None:
        raise WalletError(
            f"appliance {record.appliance_id!r} is not known: import its export first"
        )
    if not entry.verify(key):
        raise WalletError(
            f"the pin receipt does not verify under appliance "
            f"{record.appliance_id!r}'s pinned audit key"
        )
    expected = {str(d) for _, d in wallet.descriptors}
    if record.event not in PIN_EVENTS or record.details.get("descriptor") not in expected:
        raise WalletError("the receipt does not pin this wallet's descriptor")
    _usable_receipt(record)
    with store.write():
        updated = store.db.execute(
            "UPDATE wallet_members SET pin_receipt = ? WHERE wallet_id = ? AND appliance_id = ?",
            (receipt, wallet.id, record.appliance_id),
        ).rowcount
        if not updated:
            raise WalletError(f"appliance {record.appliance_id!r} is not a member of {wallet.name}")
        store.event("wallet_pinned", f"appliance {record.appliance_id} pinned {wallet.name}")
    return record.appliance_id


def unpinned_members(store: Store, wallet: Wallet) -> list[str]:
    rows = store.all(
        "SELECT appliance_id FROM wallet_members WHERE wallet_id = ? AND "
        "role = 'appliance' AND pin_receipt IS NULL",
        wallet.id,
    )
    return [r["appliance_id"] for r in rows]


def require_ready(store: Store, wallet: Wallet) -> None:
    missing = unpinned_members(store, wallet)
    if missing:
        raise WalletError(
            f"wallet {wallet.name} is not pinned yet by appliance(s) "
            f"{', '.join(missing)}: run pin-wallet there and import the "
            "receipt with `wallet confirm-pin`"
        )


# -- address inventory ------------------------------------------------------------------------


def _branches(descriptor: Descriptor) -> tuple[bool, ...]:
    return (False, True) if descriptor.branch_count >= 2 else (False,)


def extend_inventory(store: Store, wallet: Wallet, gap: int = GAP_LIMIT) -> int:
    """Derive addresses so each ranged branch has ``gap`` unused ones past the last used."""
    added = 0
    with store.write() as db:
        for descriptor_id, descriptor in wallet.descriptors:
            for change in _branches(descriptor):
                added += _extend_branch(db, wallet, descriptor_id, descriptor, change, gap)
    return added


def _extend_branch(
    db: sqlite3.Connection,
    wallet: Wallet,
    descriptor_id: int,
    descriptor: Descriptor,
    change: bool,
    gap: int,
) -> int:
    row = db.execute(
        "SELECT MAX(idx) AS top, MAX(CASE WHEN state != 'fresh' THEN idx END) AS used "
        "FROM addresses WHERE descriptor_id = ? AND change = ?",
        (descriptor_id, change),
    ).fetchone()
    top = -1 if row["top"] is None else row["top"]
    used = -1 if row["used"] is None else row["used"]
    want = used + gap if descriptor.is_ranged else 0
    added = 0
    for index in range(top + 1, want + 1):
        derived = descriptor.derive(index, change)
        address = derived.address(wallet.network)
        try:
            db.execute(
                "INSERT INTO addresses (wallet_id, descriptor_id, change, idx, script, address, "
                "state) VALUES (?, ?, ?, ?, ?, ?, 'fresh')",
                (wallet.id, descriptor_id, change, index, derived.script_pubkey, address),
            )
        except sqlite3.IntegrityError:
            raise WalletError(f"address {address} already belongs to another wallet") from None
        added += 1
    return added


@dataclass(frozen=True)
class AddressSlot:
    id: int
    descriptor_id: int
    change: bool
    index: int
    script: bytes
    address: str


def next_address(store: Store, wallet: Wallet, *, change: bool, note: str) -> AddressSlot:
    """The next fresh receive (or change) address, marked issued; see the module docstring."""
    if not change:
        require_ready(store, wallet)
    with store.write() as db:
        extend_inventory(store, wallet)
        rows = db.execute(
            "SELECT a.*, d.position FROM addresses a JOIN descriptors d ON d.id = a.descriptor_id "
            "WHERE a.wallet_id = ? AND a.state = 'fresh' ORDER BY d.position, a.change != ?, "
            "a.idx",
            (wallet.id, change),
        ).fetchall()
        blocked = blocked_descriptors(store, wallet.id, wallet.descriptors, spending=change)
        fitting = [r for r in rows if _fits(wallet, r, change)]
        if fitting and all(r["descriptor_id"] in blocked for r in fitting):
            keys = sorted({str(key) for key in blocked.values()})
            raise WalletError(
                f"wallet {wallet.name} issues no address: {'; '.join(keys)}, and the station "
                "does not sign for coins paid to it (reactivate the key on the station and "
                "record its receipt with `wallet key-state`, or use another wallet)"
            )
        fitting = [r for r in fitting if r["descriptor_id"] not in blocked]
        if not fitting:
            kind = "change" if change else "receive"
            raise WalletError(
                f"wallet {wallet.name} has no fresh {kind} address left: every key in its "
                "pool has been handed out, and an address is never handed out twice. Export "
                "another key from the station and add it (wallet add-keys), or move to a "
                "bip32-seed key, whose addresses do not run out"
            )
        row = fitting[0]
        db.execute(
            "UPDATE addresses SET state = 'issued', note = ? WHERE id = ?", (note, row["id"])
        )
        return _slot(row)


def address_warnings(store: Store) -> list[dict[str, Any]]:
    """Fixed-key wallets running out of fresh addresses (ranged ones never do): each with
    how many are left, for ``status`` and ``wallet address``."""
    warnings = []
    for row in store.all("SELECT id, name FROM wallets ORDER BY id"):
        wallet = load_wallet(store, row["name"])
        if any(d.is_ranged for _, d in wallet.descriptors):
            continue
        fresh = store.row(
            "SELECT COUNT(*) AS n FROM addresses WHERE wallet_id = ? AND state = 'fresh'",
            wallet.id,
        )["n"]
        if fresh < LOW_WATERMARK:
            warnings.append(
                {
                    "wallet": wallet.name,
                    "fresh_addresses": fresh,
                    "message": f"wallet {wallet.name} has {fresh} fresh address(es) left: "
                    "export another key from the station and add it (wallet add-keys)",
                }
            )
    return warnings


def _fits(wallet: Wallet, row: sqlite3.Row, change: bool) -> bool:
    """A ranged descriptor's change branch serves change only; a fixed key serves either."""
    descriptor = wallet.descriptor(row["descriptor_id"])
    if descriptor.branch_count < 2:
        return True
    return bool(row["change"]) == change


def _slot(row: sqlite3.Row) -> AddressSlot:
    return AddressSlot(
        row["id"],
        row["descriptor_id"],
        bool(row["change"]),
        row["idx"],
        bytes(row["script"]),
        row["address"],
    )


def scripts_of(store: Store, wallet: Wallet) -> dict[bytes, int]:
    """Every inventory script of the wallet -> address row id."""
    rows = store.all("SELECT id, script FROM addresses WHERE wallet_id = ?", wallet.id)
    return {bytes(r["script"]): r["id"] for r in rows}


# -- reconciliation (REQUIREMENTS 10) -------------------------------------------------------


@dataclass(frozen=True)
class Reconciliation:
    addresses: int
    orphan_addresses: list[str]  # inventory rows the wallet's descriptors do not derive
    unknown_outputs: list[str]  # node UTXOs on our scripts that the coin table lacks
    missing_outputs: list[str]  # coins we hold as unspent that the node does not have

    @property
    def clean(self) -> bool:
        return not (self.orphan_addresses or self.unknown_outputs or self.missing_outputs)


def reconcile(store: Store, wallet: Wallet, node_outputs: set[tuple[str, int]]) -> Reconciliation:
    """Inventory against descriptors, and coin table against the node's UTXO set.

    ``node_outputs`` is (txid, vout) of every UTXO the node reports on the wallet's scripts.
    """
    orphans = []
    rows = store.all("SELECT * FROM addresses WHERE wallet_id = ? ORDER BY id", wallet.id)
    for row in rows:
        descriptor = wallet.descriptor(row["descriptor_id"])
        derived = descriptor.derive(row["idx"], bool(row["change"]))
        if (
            derived.script_pubkey != bytes(row["script"])
            or derived.address(wallet.network) != row["address"]
        ):
            orphans.append(row["address"])
    held = {
        (r["txid"], r["vout"])
        for r in store.all(
            "SELECT txid, vout FROM utxos WHERE wallet_id = ? AND state IN ('available', 'locked')",
            wallet.id,
        )
    }
    return Reconciliation(
        addresses=len(rows),
        orphan_addresses=orphans,
        unknown_outputs=[f"{t}:{v}" for t, v in sorted(node_outputs - held)],
        missing_outputs=[f"{t}:{v}" for t, v in sorted(held - node_outputs)],
    )


def reconcile_with_node(store: Store, wallet: Wallet, rpc: BitcoinCoreRPC) -> Reconciliation:
    """``wallet reconcile``: :func:`reconcile` against the node's UTXO set, scanned for
    every script of the inventory."""
    found = rpc.scan_scripts(list(scripts_of(store, wallet)))
    return reconcile(store, wallet, {(coin.txid, coin.vout) for coin in found})


def wallet_summary(store: Store, wallet_id: int) -> dict[str, Any]:
    """Balance by coin state and the address inventory (REQUIREMENTS 10)."""
    wallet = store.row("SELECT * FROM wallets WHERE id = ?", wallet_id)
    coins = store.all(
        "SELECT state, COUNT(*) AS n, SUM(value) AS total FROM utxos "
        "WHERE wallet_id = ? GROUP BY state",
        wallet_id,
    )
    addresses = store.all(
        "SELECT a.address, d.position, a.change, a.idx, a.state, a.note, "
        "(SELECT COALESCE(SUM(value), 0) FROM utxos u WHERE u.address_id = a.id AND "
        "u.state IN ('available', 'locked')) AS balance FROM addresses a JOIN descriptors d "
        "ON d.id = a.descriptor_id WHERE a.wallet_id = ? AND a.state != 'fresh' ORDER BY a.id",
        wallet_id,
    )
    return {
        "wallet": wallet["name"],
        "network": wallet["network"],
        "kind": wallet["kind"],
        "coins": {r["state"]: {"count": r["n"], "sats": r["total"]} for r in coins},
        "addresses": [
            {
                "address": r["address"],
                "descriptor": r["position"],
                "change": bool(r["change"]),
                "index": r["idx"],
                "state": r["state"],
                "note": r["note"],
                "sats": r["balance"],
            }
            for r in addresses
        ],
    }
