"""Evidence for the audit replay, built for real.

``real_evidence`` (module scope) runs the whole custody flow once: a SoftHSM2 appliance
driven through its command line (init, keygen, export-wallet), the coordinator on a
kernel-validated regtest behind real JSON-RPC (import, fund, batch), the appliance signs,
the coordinator imports, broadcasts, the block is mined; a replayed request is refused and
journaled; then the appliance exports its audit bundle and the coordinator its evidence.
The node keeps running for the module so replays can walk the chain. Tests get private
copies (``evidence``) to tamper with.

The real run imports the appliance's and the coordinator's code only inside its fixture, so
the software world below (``SoftCold``, ``SoftDesk``: built from ``shared`` alone) keeps
working while those programs are being changed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from coincurve import PrivateKey

from shared import canonical
from shared.bitcoin import ecdsa
from shared.bitcoin.block import Block, BlockHeader
from shared.bitcoin.descriptor import Descriptor
from shared.bitcoin.script import OutputType
from shared.bitcoin.tx import SEQUENCE_RBF, OutPoint, Transaction, TxIn, TxOut
from shared.journal import Entry, export_journal, next_record, outpoints_digest, seal
from shared.policy import (
    Officer,
    Policy,
    SignedPolicy,
    approval_digest,
    fingerprint_of,
    policy_signing_digest,
    utc_day,
    wallet_pin_statement,
)
from shared.psbt import Psbt
from shared.psbt.roles import combine, extract, finalize
from shared.psbt.signer import sign_psbt
from shared.request import (
    RequestMetadata,
    attach_receipt,
    attach_request,
    read_receipts,
    request_hash,
)
from shared.review import OurKey, PinnedWallet, review

TWO = ["--officers", "officer-1,officer-2"]
TWO_PINS = ["1111", "2222"]
#: The soft appliance's first policy: the values ``appliance.initialise`` uses by default,
#: written out so this world needs none of the appliance's code.
SOFT_LIMITS = {
    "per_tx_limit": 10 * 100_000_000,
    "per_day_limit": 50 * 100_000_000,
    "fee_rate_ceiling": 200_000,
    "max_fee": 1_000_000,
    "request_ttl_max": 7 * 24 * 3600,
}
SOFT_SCRIPT_TYPES = (
    OutputType.P2WPKH,
    OutputType.P2WSH,
    OutputType.P2TR,
    OutputType.P2SH,
    OutputType.P2PKH,
)


@dataclass(frozen=True)
class RealEvidence:
    """Paths of one real run's evidence, and how to reach its node."""

    bundle: Path
    coordinator: Path
    rpc_url: str
    cookie: Path
    appliance_state: Path
    root: Path
    requests: dict[str, Path]
    signed: dict[str, Path]


@dataclass(frozen=True)
class Copy:
    """A test's private copy of the evidence (safe to tamper with)."""

    bundle: Path
    coordinator: Path
    chain: list[str]
    source: RealEvidence

    def coordinator_json(self) -> dict:
        return json.loads(self.coordinator.read_text())

    def write_coordinator(self, document: dict) -> None:
        self.coordinator.write_text(json.dumps(document, indent=1, sort_keys=True))


def _ok(done, what: str) -> None:
    assert done.returncode == 0, f"{what}: {done.stderr}{done.stdout}"


def _ceremony(desk, cold: Path, label: str, rows: list) -> tuple[Path, Path]:
    """Batch, appliance signature, import, broadcast, one block."""
    from tests.appliance.test_ceremonies_cli import run
    from tests.coordinator.test_flow import csv_for

    csv = desk.write(f"{label}.csv", csv_for(*rows))
    desk.ok(
        "batch",
        "create",
        "treasury",
        csv,
        "--label",
        label,
        "--purpose",
        "payouts",
        "--out",
        str(desk.tmp / "req"),
    )
    request = desk.tmp / "req" / f"{label}.psbt"
    signed = desk.tmp / f"{label}.signed.psbt"
    _ok(
        run(cold, "sign", "--in", str(request), *TWO, "--out", str(signed), pins=TWO_PINS),
        f"sign {label}",
    )
    desk.ok("batch", "import", label, str(signed))
    desk.ok("batch", "broadcast", label)
    desk.node.mine(1)
    desk.ok("sync")
    return request, signed


def _build(root: Path, desk) -> RealEvidence:
    from tests.appliance.test_ceremonies_cli import ADMIN_PINS, OFFICER_PINS, run
    from tests.coordinator.test_flow import BTC
    from tests.coordinator.test_flow import payee as payee_address

    cold = root / "appliance"
    _ok(
        run(
            cold,
            "init",
            "--demo",
            "--network",
            "regtest",
            pins=[*OFFICER_PINS.values(), *ADMIN_PINS.values()],
        ),
        "init",
    )
    # a bip32-seed key: two batches need two fresh change addresses (never one reused), and
    # the replay then checks children of the account the journal registers
    _ok(
        run(cold, "keygen", "treasury-1", "--key-model", "bip32-seed", *TWO, pins=TWO_PINS),
        "keygen",
    )
    export = root / "export"
    _ok(
        run(cold, "export-wallet", "treasury-1", "--out", str(export), *TWO, pins=TWO_PINS),
        "export-wallet",
    )
    desk.ok(
        "wallet",
        "import",
        "treasury",
        "--export",
        str(export / "wallet.ur"),
        str(export / "receipt.ur"),
    )
    address = desk.ok("wallet", "address", "treasury").split()[0]
    desk.fund(address, BTC, 3)
    desk.ok("sync")
    requests, signed = {}, {}
    batches = {
        "b1": [(payee_address(1), "0.4", "INV-1"), (payee_address(2), "0.3", "INV-2")],
        "b2": [(payee_address(3), "0.2", "INV-3")],
    }
    for label, rows in batches.items():
        requests[label], signed[label] = _ceremony(desk, cold, label, rows)
    # the same request presented again is not approved twice: its signed PSBT is shown again
    again = run(
        cold,
        "sign",
        "--in",
        str(requests["b1"]),
        *TWO,
        "--out",
        str(root / "again.psbt"),
        pins=TWO_PINS,
    )
    assert again.returncode == 0 and "shown again" in again.stdout, again.stderr
    # its request id on another transaction: refused as replayed, journaled with its transcript
    reused = root / "reused-id.psbt"
    reused.write_bytes(_other_transaction(requests["b1"].read_bytes()))
    refused = run(
        cold, "sign", "--in", str(reused), *TWO, "--out", str(root / "no.psbt"), pins=TWO_PINS
    )
    assert refused.returncode == 1 and "replayed" in refused.stderr, refused.stderr
    bundle = root / "bundle"
    _ok(
        run(
            cold,
            "journal",
            "export",
            "--out",
            str(root / "journal.cbor"),
            "--evidence",
            str(bundle),
            *TWO,
            pins=TWO_PINS,
        ),
        "journal export",
    )
    coordinator = root / "coordinator.json"
    desk.ok("export", "--out", str(coordinator))
    return RealEvidence(bundle, coordinator, "", Path(), cold, root, requests, signed)


def _other_transaction(data: bytes) -> bytes:
    """The same request (same id) on a different transaction: input 0's nSequence changed
    (0xfffffffe: no relative lock, no RBF), everything else as the coordinator built it."""
    psbt = Psbt.from_text(data)
    tx = psbt.unsigned_tx
    first = dataclasses.replace(tx.inputs[0], sequence=0xFFFFFFFE)
    psbt.globals.set(
        0x00, Transaction(tx.version, [first, *tx.inputs[1:]], tx.outputs, tx.locktime).serialize()
    )
    return psbt.serialize()


@pytest.fixture(scope="module")
def real_evidence(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealEvidence]:
    from online_coordinator.config import write_config
    from online_coordinator.regtest.node import RegtestNode
    from online_coordinator.regtest.server import start_in_thread
    from tests.coordinator.conftest import Desk

    root = tmp_path_factory.mktemp("audit-real")
    node = RegtestNode(root / "regtest")
    server = start_in_thread(node)
    try:
        state = root / "coordinator"
        write_config(state, "regtest", (server.url, Path(server.cookie_path)))
        built = _build(root, Desk(state, node, root))
        yield dataclasses.replace(built, rpc_url=server.url, cookie=Path(server.cookie_path))
    finally:
        server.shutdown()
        node.close()


@pytest.fixture
def evidence(real_evidence: RealEvidence, tmp_path: Path) -> Copy:
    """A private copy of the real evidence; ``chain`` holds the --chain arguments."""
    bundle = tmp_path / "bundle"
    shutil.copytree(real_evidence.bundle, bundle)
    coordinator = tmp_path / "coordinator.json"
    shutil.copyfile(real_evidence.coordinator, coordinator)
    chain = ["--chain", real_evidence.rpc_url, "--cookie", str(real_evidence.cookie)]
    return Copy(bundle, coordinator, chain, real_evidence)


# -- a software world: genuine signed evidence without an HSM -----------------------------
#
# ``SoftCold`` does what the appliance does, with software keys: genesis records, the first
# policy signed by its administrators, the audit key signing every record, and for each
# request the real ``shared.review.review`` (its transcript kept by hash), officers'
# approvals over the request hash, the signature and the ``signing_decision`` record.
# ``SoftDesk`` plays the coordinator: wallets, requests, responses, receipts, broadcasts,
# written in ``coldstation-coordinator export``'s JSON shape. Tests that need an insider
# (someone holding the audit key) re-sign records here; the real evidence above covers the
# HSM path.

START = 1_750_000_000


def secret(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def pubkey(sk: bytes) -> bytes:
    return PrivateKey(sk).public_key.format(compressed=True)


@dataclass
class _History:
    seen: set = field(default_factory=set)
    outpoints: dict = field(default_factory=dict)
    paid: dict = field(default_factory=dict)


class SoftCold:
    """A software appliance; see the section comment."""

    def __init__(
        self,
        appliance_id: str,
        *,
        network: str = "regtest",
        approvers: int = 3,
        quorum: int = 2,
        admins: int = 2,
        **limits: int,
    ) -> None:
        self.id, self.network, self.clock = appliance_id, network, START
        self.audit = secret(f"{appliance_id} audit")
        self.key = secret(f"{appliance_id} signing key")
        self.officer_keys = [secret(f"{appliance_id} officer {i}") for i in range(approvers)]
        self.admin_keys = [secret(f"{appliance_id} admin {i}") for i in range(admins)]
        self.entries: list[Entry] = []
        self.policy_files: dict[str, bytes] = {}
        self.transcripts: dict[str, bytes] = {}
        self.descriptors: list[Descriptor] = []
        self.history = _History()
        #: signing records name their inputs by digest (``outpoints_sha256``) as the station
        #: writes them now; True writes the older list (``outpoints``)
        self.list_outpoints = False
        self.policy = self._first_policy(quorum, limits)
        self._genesis()

    # -- journal ---------------------------------------------------------------------------

    @property
    def audit_pubkey(self) -> bytes:
        return pubkey(self.audit)

    @property
    def pubkey(self) -> bytes:
        return pubkey(self.key)

    def record(self, event: str, **fields) -> Entry:
        self.clock += 1
        previous = self.entries[-1] if self.entries else None
        record = next_record(previous, time=self.clock, appliance_id=self.id, event=event, **fields)
        entry = seal(record, lambda digest: ecdsa.sign(self.audit, digest))
        self.entries.append(entry)
        return entry

    def _first_policy(self, quorum: int, limits: dict) -> Policy:
        return Policy(
            version=1,
            network=self.network,
            appliance_id=self.id,
            officers=tuple(Officer.from_pubkey(pubkey(k), "approver") for k in self.officer_keys),
            approval_quorum=quorum,
            administrators=tuple(
                Officer.from_pubkey(pubkey(k), "administrator") for k in self.admin_keys
            ),
            admin_quorum=len(self.admin_keys),
            address_book=(),
            require_address_book=False,
            allowed_script_types=SOFT_SCRIPT_TYPES,
            previous_hash=None,
            **{**SOFT_LIMITS, **limits},
        )

    def sign_policy(self, policy: Policy, admin_keys: list[bytes] | None = None) -> SignedPolicy:
        digest = policy_signing_digest(policy)
        keys = self.admin_keys if admin_keys is None else admin_keys
        return SignedPolicy(
            policy, {fingerprint_of(pubkey(k)): ecdsa.sign(k, digest) for k in keys}
        )

    def _genesis(self) -> None:
        officers = [fingerprint_of(pubkey(k)) for k in self.officer_keys]
        admins = [fingerprint_of(pubkey(k)) for k in self.admin_keys]
        self.record("token_init", actors=officers[:2], details={"token": "soft"})
        self.record(
            "key_generated",
            actors=officers[:2],
            subjects={"public_key": self.audit_pubkey},
            details={"label": "coldstation-audit", "backup_model": "non-extractable"},
        )
        for role, fps in (("approver", officers), ("administrator", admins)):
            for fp in fps:
                self.record("officer_enrolled", actors=[fp], details={"role": role})
        self._install(self.sign_policy(self.policy))
        self.record(
            "key_generated",
            actors=officers[:2],
            subjects={"public_key": self.pubkey},
            details={"label": "treasury", "backup_model": "non-extractable"},
        )

    def _install(self, signed: SignedPolicy) -> Entry:
        self.policy = signed.policy
        self.policy_files[f"{signed.policy.version:04d}.cbor"] = signed.to_bytes()
        return self.record(
            "policy_installed",
            actors=list(signed.signatures),
            subjects={"policy": signed.policy.hash()},
            details={"version": signed.policy.version},
        )

    def install(self, **changes) -> Entry:
        """The next policy version, with ``changes``, signed by the administrators."""
        plain = {
            **self.policy.to_plain(),
            **changes,
            "version": self.policy.version + 1,
            "previous_hash": self.policy.hash(),
        }
        return self._install(self.sign_policy(Policy.from_plain(plain)))

    # -- wallets ---------------------------------------------------------------------------

    @property
    def descriptor(self) -> Descriptor:
        return Descriptor.parse(f"wpkh({self.pubkey.hex()})", require_checksum=False)

    @property
    def activating(self) -> list[str]:
        """The officers who activate the station for a ceremony (the first quorum)."""
        quorum = self.policy.approval_quorum
        return [fingerprint_of(pubkey(k)) for k in self.officer_keys[:quorum]]

    def pin(self, descriptor: Descriptor, event: str = "wallet_exported") -> Entry:
        """A wallet receipt as the record contract has it: the activating officers as
        actors, the quorum they met (``wallet_pinned`` for a wallet of several keys)."""
        self.descriptors.append(descriptor)
        text = str(descriptor)
        details = {"descriptor": text, "quorum": self.policy.approval_quorum}
        if event == "wallet_exported":
            details["audit_key"] = self.audit_pubkey.hex()
        else:  # a quorum of administrators signs exactly this pin, as the station asks
            details["authorised_by"] = "administrators"
            digest = canonical.digest(wallet_pin_statement(self.id, "pin", text))
            details["admin_signatures"] = {
                fingerprint_of(pubkey(k)): ecdsa.sign(k, digest) for k in self.admin_keys
            }
        return self.record(
            event,
            actors=self.activating,
            subjects={"descriptor": hashlib.sha256(text.encode()).digest()},
            details=details,
        )

    # -- signing ---------------------------------------------------------------------------

    def review(self, psbt: Psbt):
        wallet = PinnedWallet(tuple(self.descriptors), (OurKey(self.pubkey, "treasury"),))
        return review(
            psbt,
            wallet,
            self.policy,
            now=self.clock,
            seen_request_ids=self.history.seen,  # a set: no copy per ceremony
            signed_outpoints=self.history.outpoints,
            spent_today_before=self.history.paid.get(utc_day(self.clock), 0),
        )

    def sign(
        self,
        psbt: Psbt,
        approvers: tuple[int, ...] = (0, 1),
        judge: Callable[[dict, Policy], dict] | None = None,
    ) -> tuple[Psbt, Entry]:
        """Review, approvals, signature, record; a refusal is recorded and returned too.

        ``judge`` plays a station whose judgement was subverted (its wallet or key files
        edited, or old code): it rewrites the transcript before anything is recorded, and
        the station then acts on the rewritten one, as a real one would on its own review.
        """
        self.clock += 5
        result = self.review(psbt)
        plain = result.to_plain()
        if judge is not None:
            plain = judge(plain, self.policy)
        paid_out = plain.get("paid_to_others")
        digest = canonical.digest(plain)
        self.transcripts[f"{digest.hex()}.cbor"] = canonical.encode(plain)
        tx = psbt.unsigned_tx
        inputs = (
            {"outpoints": [str(i.prevout) for i in tx.inputs]}
            if self.list_outpoints
            else {
                "inputs": len(tx.inputs),
                "outpoints_sha256": outpoints_digest(i.prevout for i in tx.inputs).hex(),
            }
        )
        details = {
            "txid": tx.txid_hex,
            **inputs,
            "refusals": plain.get("refusals", []),
            "request_id": result.request.request_id,
            "paid_out": paid_out,
            "fee": result.fee,
        }
        subjects = {
            "psbt": hashlib.sha256(tx.serialize()).digest(),
            "transcript": digest,
            "request": result.request_hash,
        }
        self.history.seen.add(result.request.request_id)
        if plain.get("approved_for_signing") is not True:
            return psbt, self.record(
                "signing_decision", decision="refused", subjects=subjects, details=details
            )
        approval = approval_digest(result.request_hash, self.policy.hash())
        details["approvals"] = {
            fingerprint_of(pubkey(self.officer_keys[i])): ecdsa.sign(self.officer_keys[i], approval)
            for i in approvers
        }
        details["quorum"] = self.policy.approval_quorum
        signed, count = sign_psbt(psbt, [self.key])
        details["signatures"] = count
        entry = self.record(
            "signing_decision",
            decision="approved",
            subjects=subjects,
            actors=sorted(details["approvals"]),
            details=details,
        )
        for txin in tx.inputs:
            self.history.outpoints[txin.prevout] = tx.txid
        day = utc_day(entry.record.time)
        self.history.paid[day] = self.history.paid.get(day, 0) + paid_out
        return attach_receipt(signed, entry.to_bytes()), entry

    # -- the bundle ------------------------------------------------------------------------

    def bundle(self) -> tuple[bytes, dict[str, bytes], dict[str, bytes]]:
        """(journal export, policy files, transcript files), ending with the export record."""
        self.record("journal_export", details={"length": len(self.entries) + 1})
        journal = export_journal(self.entries, self.id, self.audit_pubkey)
        return journal, dict(self.policy_files), dict(self.transcripts)

    def write_bundle(self, folder: Path) -> Path:
        journal, policies, transcripts = self.bundle()
        (folder / "policies").mkdir(parents=True)
        (folder / "transcripts").mkdir()
        (folder / "journal.cbor").write_bytes(journal)
        for name, data in policies.items():
            (folder / "policies" / name).write_bytes(data)
        for name, data in transcripts.items():
            (folder / "transcripts" / name).write_bytes(data)
        return folder


@dataclass
class SoftWallet:
    name: str
    descriptor: Descriptor
    members: list[dict]
    threshold: int | None = None
    birth_height: int = 0


class SoftDesk:
    """The coordinator's side, written as ``coldstation-coordinator export`` would."""

    def __init__(self, network: str = "regtest") -> None:
        self.network = network
        self.pinned: dict[str, bytes] = {}
        self.wallets: list[SoftWallet] = []
        self.requests: list[dict] = []
        self._by_txid: dict[str, dict] = {}  # the first request of each transaction
        self.broadcasts: list[dict] = []
        self._coins = 0
        self._requests = 0

    def import_single(self, name: str, cold: SoftCold) -> SoftWallet:
        receipt = cold.pin(cold.descriptor).to_bytes().hex()
        self.pinned[cold.id] = cold.audit_pubkey
        member = {
            "appliance_id": cold.id,
            "key": cold.pubkey.hex(),
            "role": "appliance",
            "export_receipt": receipt,
            "pin_receipt": receipt,
        }
        wallet = SoftWallet(name, cold.descriptor, [member])
        self.wallets.append(wallet)
        return wallet

    def multisig(
        self, name: str, threshold: int, colds: list[SoftCold], external: list[bytes]
    ) -> SoftWallet:
        keys = [c.pubkey.hex() for c in colds] + [k.hex() for k in external]
        descriptor = Descriptor.parse(
            f"wsh(sortedmulti({threshold},{','.join(keys)}))", require_checksum=False
        )
        members = []
        for cold in colds:
            self.pinned[cold.id] = cold.audit_pubkey
            export = cold.pin(cold.descriptor).to_bytes().hex()
            pin = cold.pin(descriptor, "wallet_pinned").to_bytes().hex()
            members.append(
                {
                    "appliance_id": cold.id,
                    "key": cold.pubkey.hex(),
                    "role": "appliance",
                    "export_receipt": export,
                    "pin_receipt": pin,
                }
            )
        members += [
            {
                "appliance_id": None,
                "key": k.hex(),
                "role": "external",
                "export_receipt": None,
                "pin_receipt": None,
            }
            for k in external
        ]
        wallet = SoftWallet(name, descriptor, members, threshold)
        self.wallets.append(wallet)
        return wallet

    def coin(self, wallet: SoftWallet, value: int) -> Transaction:
        """A previous transaction paying ``value`` to the wallet (unique per call)."""
        self._coins += 1
        dummy = OutPoint(hashlib.sha256(f"coin {self._coins}".encode()).digest(), 0)
        script = wallet.descriptor.derive(0).script_pubkey
        return Transaction(2, [TxIn(dummy)], [TxOut(value, script)])

    def request(
        self,
        wallet: SoftWallet,
        coins: list[Transaction],
        payouts: list[tuple],
        created: int,
        fee: int = 500,
        replaces: Transaction | None = None,
        requester: str = "ops",
    ) -> Psbt:
        """An unsigned request: every coin spent, payouts, change back to the wallet; with
        ``replaces``, a fee bump of that (signed) transaction."""
        derived = wallet.descriptor.derive(0)
        vouts = [
            next(i for i, o in enumerate(c.outputs) if o.script_pubkey == derived.script_pubkey)
            for c in coins
        ]  # the coin pays receive index 0
        change = (
            sum(c.outputs[v].value for c, v in zip(coins, vouts, strict=True))
            - sum(a for _, a in payouts)
            - fee
        )
        outputs = [TxOut(a, s) for s, a in payouts] + [TxOut(change, derived.script_pubkey)]
        tx = Transaction(
            2,
            [
                TxIn(OutPoint(c.txid, v), sequence=SEQUENCE_RBF)
                for c, v in zip(coins, vouts, strict=True)
            ],
            outputs,
        )
        psbt = Psbt.from_unsigned_tx(tx)
        for inp, coin, vout in zip(psbt.inputs, coins, vouts, strict=True):
            inp.set(0x00, coin.serialize())
            inp.set(0x01, coin.outputs[vout].serialize())
            if derived.witness_script is not None:
                inp.set(0x05, derived.witness_script)
        self._requests += 1
        meta = RequestMetadata(
            request_id=hashlib.sha256(f"r{self._requests}".encode()).digest()[:16],
            batch_id=f"b{self._requests}",
            requester=requester,
            created=created,
            expiry=created + 86400,
            purpose="payouts",
            network=self.network,
            kind="replacement" if replaces else "payment",
            replaces=(replaces.txid,) if replaces else (),
        )
        psbt = attach_request(psbt, meta)
        row = {
            "batch": meta.batch_id,
            "request_id": meta.request_id.hex(),
            "kind": meta.kind,
            "replaces": None,
            "unsigned_psbt": psbt.to_base64(),
            "request_hash": request_hash(psbt, meta).hex(),
            "txid": tx.txid_hex,
            "fee": psbt.fee(),
            "state": "open",
            "created": created,
            "expiry": meta.expiry,
            "responses": [],
            "receipts": [],
        }
        self.requests.append(row)
        self._by_txid.setdefault(tx.txid_hex, row)
        return psbt

    def _row(self, psbt: Psbt) -> dict:
        """The request of ``psbt``'s transaction (indexed: a bench builds 100,000)."""
        txid = psbt.unsigned_tx.txid_hex
        return self._by_txid[txid]

    def respond(self, signed: Psbt) -> None:
        row = self._row(signed)
        row["responses"].append(signed.to_base64())
        for raw in read_receipts(signed):
            entry = Entry.from_bytes(raw)
            if all(r["appliance_id"] != entry.record.appliance_id for r in row["receipts"]):
                row["receipts"].append(
                    {"appliance_id": entry.record.appliance_id, "entry": raw.hex()}
                )
        row["state"] = "signed"

    def broadcast(self, signed: list[Psbt], height: int | None = None) -> Transaction:
        final = finalize(combine(signed))
        assert final.complete, final.problems
        tx = extract(final.psbt)
        row = self._row(signed[0])
        row["state"] = "broadcast"
        self.broadcasts.append(
            {
                "request_id": row["request_id"],
                "txid": tx.txid_hex,
                "wtxid": tx.wtxid_hex,
                "raw": tx.serialize().hex(),
                "state": "confirmed" if height else "sent",
                "block_hash": "00" * 32 if height else None,
                "height": height,
                "sends": 1,
            }
        )
        return tx

    def evidence(self) -> dict:
        wallets = [
            {
                "name": w.name,
                "network": self.network,
                "kind": "multisig" if w.threshold else "single",
                "threshold": w.threshold,
                "birth_height": w.birth_height,
                "descriptors": [str(w.descriptor)],
                "members": w.members,
            }
            for w in self.wallets
        ]
        return {
            "type": "coldstation-coordinator-evidence",
            "version": 1,
            "appliances": [
                {"appliance_id": k, "audit_key": v.hex()} for k, v in sorted(self.pinned.items())
            ],
            "wallets": wallets,
            "requests": self.requests,
            "broadcasts": self.broadcasts,
            "alerts": [],
        }

    def evidence_bytes(self) -> bytes:
        return (json.dumps(self.evidence(), indent=1, sort_keys=True) + "\n").encode()


def payee(n: int) -> bytes:
    """A P2WPKH script nobody in the tests controls."""
    return b"\x00\x14" + secret(f"payee {n}")[:20]


def soft_ceremony(
    desk: SoftDesk,
    wallet: SoftWallet,
    colds: list[SoftCold],
    n: int,
    amount: int = 50_000,
    broadcast: bool = True,
) -> tuple[Psbt, list[Psbt]]:
    """One full ceremony: coin, request, every appliance signs, the desk broadcasts."""
    coin = desk.coin(wallet, amount * 3)
    request = desk.request(wallet, [coin], [(payee(n), amount)], created=colds[0].clock)
    signed = []
    for cold in colds:
        response, entry = cold.sign(request)
        assert entry.record.decision == "approved", entry.record.details["refusals"]
        desk.respond(response)
        signed.append(response)
    if broadcast:
        desk.broadcast(signed, height=200 + n)
    return request, signed


# -- a chain for the replay to walk ---------------------------------------------------------


def block_of(previous: bytes, txs: list[Transaction], tag: int = 0) -> Block:
    """A block holding ``txs`` after a coinbase (``tag`` makes empty blocks differ); the
    scanner checks hashes and links, not proof of work or merkle roots."""
    coinbase = Transaction(
        2, [TxIn(OutPoint(bytes(32), 0xFFFFFFFF), b"\x01" + bytes([tag]))], [TxOut(0, b"\x6a")]
    )
    header = BlockHeader(
        version=4, prev_hash=previous, merkle_root=bytes(32), time=tag, bits=0x207FFFFF, nonce=0
    )
    return Block(header, [coinbase, *txs])


class FakeNode:
    """The auditor's node as ``coldstation-audit`` sees it over RPC: ``txs_at`` holds the
    transactions of each height (any other height up to ``tip`` is an empty block)."""

    def __init__(
        self, tip: int, txs_at: dict[int, list[Transaction]], chain: str = "regtest"
    ) -> None:
        self.chain, self.blocks, self.asked = chain, [], []
        previous = bytes(32)
        for height in range(tip + 1):
            block = block_of(previous, txs_at.get(height, []), tag=height % 256)
            self.blocks.append(block)
            previous = block.hash

    def __call__(self, url: str, auth: object) -> FakeNode:  # stands in for BitcoinCoreRPC
        return self

    def __enter__(self) -> FakeNode:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def chain_name(self) -> str:
        return self.chain

    def block_count(self) -> int:
        return len(self.blocks) - 1

    def block_hashes(self, heights: list[int]) -> list[str]:
        return [self.blocks[h].hash_hex for h in heights]

    def batch(self, calls: list[tuple[str, list]]) -> list[str]:
        by_hash = {b.hash_hex: b for b in self.blocks}
        out = []
        for method, (block_hash, _) in calls:
            assert method == "getblock"
            self.asked.append(self.blocks.index(by_hash[block_hash]))
            out.append(by_hash[block_hash].serialize().hex())
        return out


@dataclass
class CliRun:
    """One ``coldstation-audit`` run: exit code, what it printed, the JSON report if any."""

    code: int
    out: str
    err: str
    report: dict | None = None
    html: str | None = None

    def messages(self, check: str | None = None) -> str:
        assert self.report is not None, self.err
        return "\n".join(
            f"{f['where']}: {f['message']}"
            for f in self.report["findings"]
            if check is None or f["check"] == check
        )


def run_audit(*args: str, reports: Path | None = None) -> CliRun:
    """Run ``coldstation-audit`` in-process (its I/O adapter included); with ``reports``,
    ask for the JSON and HTML reports there and read them back."""
    import contextlib
    import io

    from online_coordinator.audit_cli import main

    argv = list(args)
    if reports is not None:
        argv += ["--json", str(reports / "report.json"), "--html", str(reports / "report.html")]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse
            code = int(exc.code or 0)
    run = CliRun(code, out.getvalue(), err.getvalue())
    if reports is not None and code in (0, 1):
        run.report = json.loads((reports / "report.json").read_text())
        run.html = (reports / "report.html").read_text()
    return run


def write_evidence(root: Path, colds: list[SoftCold], desk: SoftDesk) -> list[str]:
    """The bundles and the coordinator evidence as files: the replay's arguments."""
    args = []
    for cold in colds:
        args += ["--journal", str(cold.write_bundle(root / f"bundle-{cold.id}"))]
    coordinator = root / "coordinator.json"
    coordinator.write_bytes(desk.evidence_bytes())
    return ["replay", *args, "--coordinator-export", str(coordinator)]
