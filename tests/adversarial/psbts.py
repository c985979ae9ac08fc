"""A builder of real signing requests, valid and adversarial, for the whole team.

Everything is built the way the coordinator builds it: a real funding transaction pays the
wallet, the spend is wrapped with ``Psbt.from_unsigned_tx`` and filled with ``.set()``
(``non_witness_utxo`` *and* a matching ``witness_utxo`` on every input, witness scripts,
BIP-32 derivation hints, change hints), and the request metadata is attached with
``shared.request.attach_request``. Nothing is mocked.

The wallet is what a Coldstation appliance pins:

* ``wpkh(<our HSM key 1>)``: a raw HSM key, so every coin and the change share one script;
* ``wsh(sortedmulti(2, <our HSM key 2>, [cosigner]tpub/<0;1>/*, <partner appliance key>))``:
  one ranged cosigner xpub makes it a ranged descriptor, so hints must name the index.

Use :class:`Scenario` (a frozen dataclass of knobs; ``dataclasses.replace`` to change one)
and :meth:`Scenario.build` to get a :class:`Case`: the PSBT plus the wallet, policy and
journal context to review it with, and the refusal codes a correct review must report.
:func:`variant` / :data:`VARIANTS` give the ready-made attacks; each differs from the
valid scenario in exactly the way its name says.

Test-only secrets live here (derived from names with SHA-256): never use them for coins.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from coincurve import PrivateKey

from shared.bitcoin import ecdsa
from shared.bitcoin.address import Network, script_to_address
from shared.bitcoin.bip32 import ExtendedKey, KeyOrigin
from shared.bitcoin.descriptor import DerivedOutput, Descriptor
from shared.bitcoin.script import OutputType, multisig_script, p2wpkh_script, p2wsh_script
from shared.bitcoin.sighash import (
    SIGHASH_ALL,
    SIGHASH_ANYONECANPAY,
    SIGHASH_NONE,
    SIGHASH_SINGLE,
    SighashCache,
)
from shared.bitcoin.tx import SEQUENCE_RBF, OutPoint, Transaction, TxIn, TxOut
from shared.policy import Officer, Policy, fingerprint_of
from shared.psbt import Psbt
from shared.psbt.scripts import spend_info
from shared.psbt.signer import sign_psbt
from shared.request import (
    SUBTYPE_REQUEST,
    RequestMetadata,
    attach_request,
    proprietary_keydata,
)
from shared.review import OurKey, PinnedWallet, Review, review

NOW = 1_700_000_000
NETWORK = Network.REGTEST


def secret(name: str) -> bytes:
    return hashlib.sha256(name.encode()).digest()


def pubkey(name: str) -> bytes:
    return PrivateKey(secret(name)).public_key.format(compressed=True)


# -- keys and wallet ----------------------------------------------------------------------

OUR_WPKH = "coldstation hsm wallet-key-1"
OUR_WSH = "coldstation hsm wallet-key-2"
PARTNER = "partner appliance wallet key"
WPKH_LABEL = "wallet-key-1"
WSH_LABEL = "wallet-key-2"
ACCOUNT_PATH = "48'/1'/0'/2'"
COSIGNER_MASTER = ExtendedKey.from_seed(secret("cosigner seed"), Network.TESTNET)
COSIGNER_ACCOUNT = COSIGNER_MASTER.derive_path("m/" + ACCOUNT_PATH).neuter()
COSIGNER_ORIGIN = KeyOrigin.parse(f"{COSIGNER_MASTER.fingerprint.hex()}/{ACCOUNT_PATH}")

#: Software stand-ins for the HSM keys (pubkey -> secret), for signing tests only.
OUR_SECRETS = {pubkey(name): secret(name) for name in (OUR_WPKH, OUR_WSH)}

WPKH_DESCRIPTOR = Descriptor.parse(f"wpkh({pubkey(OUR_WPKH).hex()})", require_checksum=False)
WSH_DESCRIPTOR = Descriptor.parse(
    f"wsh(sortedmulti(2,{pubkey(OUR_WSH).hex()},"
    f"[{COSIGNER_ORIGIN}]{COSIGNER_ACCOUNT.to_base58()}/<0;1>/*,{pubkey(PARTNER).hex()}))",
    require_checksum=False,
)

#: A key pool's second single-key wallet (an hsm-key pool: one address per key).
POOL_KEY_2 = "coldstation hsm pool key 2"
POOL_2 = Descriptor.parse(f"wpkh({pubkey(POOL_KEY_2).hex()})", require_checksum=False)


def make_wallet(state: str = "active") -> PinnedWallet:
    """Both descriptors pinned; both HSM keys in ``state``."""
    return PinnedWallet(
        (WPKH_DESCRIPTOR, WSH_DESCRIPTOR),
        (OurKey(pubkey(OUR_WPKH), WPKH_LABEL, state), OurKey(pubkey(OUR_WSH), WSH_LABEL, state)),
    )


def cosigner_secret(origin: KeyOrigin) -> bytes | None:
    """The cosigner's private key for a hint of theirs, else None."""
    if origin.fingerprint != COSIGNER_MASTER.fingerprint:
        return None
    return COSIGNER_MASTER.derive_path(origin.path).key


# -- payees and policy --------------------------------------------------------------------

PAYEE_EXCHANGE = p2wpkh_script(pubkey("payee: exchange hot wallet"))
PAYEE_SUPPLIER = p2wsh_script(multisig_script(1, [pubkey("payee: supplier 1")]))
STRANGER = p2wpkh_script(pubkey("stranger"))
LABELS = {PAYEE_EXCHANGE: "Exchange hot wallet", PAYEE_SUPPLIER: "Supplier GmbH"}
APPROVERS = ("officer ann", "officer bob", "officer cat")
ADMINS = ("admin dan", "admin eve", "admin fay")
REQUESTER = fingerprint_of(pubkey("requester ops desk"))
REQUEST_ID = secret("request 1")[:16]
OTHER_TXID = secret("a transaction signed earlier")  # internal byte order


def address(script: bytes) -> str:
    text = script_to_address(script, NETWORK)
    assert text is not None
    return text


def make_policy(**changes: Any) -> Policy:
    """Regtest policy: 2-of-3 approvers, address book required, 2M sat per tx, 5M a day,
    50 sat/vB ceiling, 100k sat max fee, one-hour request lifetime."""
    fields: dict[str, Any] = dict(
        version=1,
        network="regtest",
        appliance_id="cold-01",
        officers=tuple(Officer.from_pubkey(pubkey(n), "approver") for n in APPROVERS),
        approval_quorum=2,
        administrators=tuple(Officer.from_pubkey(pubkey(n), "administrator") for n in ADMINS),
        admin_quorum=2,
        address_book=tuple((address(s), label) for s, label in LABELS.items()),
        require_address_book=True,
        per_tx_limit=2_000_000,
        per_day_limit=5_000_000,
        fee_rate_ceiling=50_000,
        max_fee=100_000,
        allowed_script_types=(OutputType.P2WPKH, OutputType.P2WSH, OutputType.P2TR),
        request_ttl_max=3600,
        previous_hash=None,
    )
    fields.update(changes)
    return Policy(**fields)


# -- scenario -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """Knobs of one signing request; the defaults are a valid two-payee batch.

    Change is ``sum(inputs) + foreign_input - sum(payments) - fee`` and goes last; with
    ``change=False`` the remainder is the fee.
    """

    kind: str = "wpkh"  # which pinned wallet funds the spend: "wpkh" or "wsh"
    input_amounts: tuple[int, ...] = (600_000, 500_000)
    payments: tuple[tuple[bytes, int], ...] = ((PAYEE_EXCHANGE, 400_000), (PAYEE_SUPPLIER, 250_000))
    fee: int = 3_000
    change: bool = True
    receive_index: int = 7  # wsh: input i was received at index receive_index + i
    change_index: int = 3  # wsh: change branch index
    # request metadata
    request: bool = True
    request_id: bytes = REQUEST_ID
    network: str = "regtest"
    request_kind: str = "payment"
    replaces: tuple[bytes, ...] = ()
    created: int = NOW - 60
    expiry: int = NOW + 1800
    second_request: bool = False
    # appliance state (journal) and policy
    now: int = NOW
    seen_request_ids: frozenset[bytes] = frozenset()
    conflict_input: int | None = None  # this input's outpoint was signed in OTHER_TXID
    spent_today_before: int = 0
    key_state: str = "active"
    policy_changes: tuple[tuple[str, Any], ...] = ()
    # tampering
    change_script: bytes | None = None  # change output pays this, but keeps our hints
    foreign_input: int = 0  # amount of an extra input from a stranger's coin
    witness_utxo_delta: int = 0  # input 0's witness_utxo amount is off by this
    drop_non_witness_utxo: bool = False  # input 0 without its full previous transaction
    sighash_field: int | None = None  # PSBT_IN_SIGHASH_TYPE on input 0
    cosigner_signs: bool = False  # wsh: the xpub cosigner's partial signatures present
    cosigner_sighash: int = SIGHASH_ALL  # ... input 0's signed with this type
    bad_cosigner_signature: bool = False  # ... input 0's over the wrong message
    stranger_signature: bool = False  # input 0 signed by a key not in its script
    change_to_other_wallet: bool = False  # change pays the other pinned wallet, with hints
    change_to: Descriptor | None = None  # change pays this descriptor's first address
    locktime: int = 0  # nLockTime of the spend
    tip_height: int | None = None  # the chain tip the request declares
    requester: str = REQUESTER  # who the request says asks
    sequence0: int = SEQUENCE_RBF  # nSequence of input 0

    def build(self, name: str = "valid", expected: tuple[str, ...] = ()) -> Case:
        return _Builder(self).build(name, expected)


@dataclass(frozen=True)
class Case:
    """A built request, what to review it against, and the refusal codes expected."""

    name: str
    scenario: Scenario
    psbt: Psbt
    wallet: PinnedWallet
    policy: Policy
    meta: RequestMetadata | None
    expected: tuple[str, ...]
    funding: tuple[Transaction, ...]
    signed_outpoints: Mapping[OutPoint, bytes] = field(default_factory=dict)

    def context(self) -> dict[str, Any]:
        """Keyword arguments of ``shared.review.review`` besides PSBT, wallet and policy."""
        s = self.scenario
        return {
            "now": s.now,
            "seen_request_ids": set(s.seen_request_ids),
            "signed_outpoints": dict(self.signed_outpoints),
            "spent_today_before": s.spent_today_before,
        }

    def review(self) -> Review:
        return review(self.psbt, self.wallet, self.policy, **self.context())

    def spent(self) -> list[TxOut]:
        """Each input's spent output, from the funding transactions (for the kernel)."""
        by_txid = {tx.txid: tx for tx in self.funding}
        return [
            by_txid[txin.prevout.txid].outputs[txin.prevout.vout]
            for txin in self.psbt.unsigned_tx.inputs
        ]


class _Builder:
    def __init__(self, s: Scenario) -> None:
        self.s = s
        self.descriptor = WPKH_DESCRIPTOR if s.kind == "wpkh" else WSH_DESCRIPTOR

    def receive(self, i: int) -> DerivedOutput:
        return self.descriptor.derive(self.s.receive_index + i)

    def change(self) -> DerivedOutput:
        if self.s.change_to is not None:
            return self.s.change_to.derive(0)
        kind = self.s.kind
        if self.s.change_to_other_wallet:
            kind = "wsh" if kind == "wpkh" else "wpkh"
        if kind == "wpkh":
            return WPKH_DESCRIPTOR.derive(0)
        return WSH_DESCRIPTOR.derive(self.s.change_index, change=True)

    def build(self, name: str, expected: tuple[str, ...]) -> Case:
        s = self.s
        funding = Transaction(
            2,
            [TxIn(OutPoint(secret("coinbase of " + s.kind), 0), b"", SEQUENCE_RBF)],
            [TxOut(a, self.receive(i).script_pubkey) for i, a in enumerate(s.input_amounts)],
        )
        stranger = Transaction(
            2,
            [TxIn(OutPoint(secret("stranger's coin"), 1), b"", SEQUENCE_RBF)],
            [TxOut(s.foreign_input, STRANGER)],
        )
        spend = self.spend(funding, stranger)
        psbt = Psbt.from_unsigned_tx(spend)
        self.fill_inputs(psbt, funding, stranger)
        self.fill_change(psbt, len(s.payments))
        meta = self.meta() if s.request else None
        if meta is not None:
            psbt = attach_request(psbt, meta)
            if s.second_request:
                psbt.globals.set(0xFC, meta.to_bytes(), proprietary_keydata(SUBTYPE_REQUEST, b"2"))
        psbt = self.sign(psbt)
        signed = {}
        if s.conflict_input is not None:
            signed[spend.inputs[s.conflict_input].prevout] = OTHER_TXID
        policy = make_policy(**dict(s.policy_changes))
        wallet = make_wallet(s.key_state)
        return Case(name, s, psbt, wallet, policy, meta, expected, (funding, stranger), signed)

    def spend(self, funding: Transaction, stranger: Transaction) -> Transaction:
        s = self.s
        count = len(s.input_amounts)
        inputs = [
            TxIn(OutPoint(funding.txid, i), b"", s.sequence0 if i == 0 else SEQUENCE_RBF)
            for i in range(count)
        ]
        if s.foreign_input:
            inputs.append(TxIn(OutPoint(stranger.txid, 0), b"", SEQUENCE_RBF))
        outputs = [TxOut(amount, script) for script, amount in s.payments]
        if s.change:
            value = sum(s.input_amounts) + s.foreign_input - sum(a for _, a in s.payments) - s.fee
            outputs.append(TxOut(value, s.change_script or self.change().script_pubkey))
        return Transaction(2, inputs, outputs, s.locktime)

    def fill_inputs(self, psbt: Psbt, funding: Transaction, stranger: Transaction) -> None:
        s = self.s
        for i, inp in enumerate(psbt.inputs[: len(s.input_amounts)]):
            utxo = funding.outputs[i]
            if not (i == 0 and s.drop_non_witness_utxo):
                inp.set(0x00, funding.serialize())
            claimed = TxOut(
                utxo.value + (s.witness_utxo_delta if i == 0 else 0), utxo.script_pubkey
            )
            inp.set(0x01, claimed.serialize())
            derived = self.receive(i)
            if derived.witness_script is not None:
                inp.set(0x05, derived.witness_script)
            for key, origin in derived.keys:
                inp.set(0x06, origin.to_psbt_bytes(), keydata=key)
            if i == 0 and s.sighash_field is not None:
                inp.set(0x03, (s.sighash_field & 0xFFFFFFFF).to_bytes(4, "little"))
        if s.foreign_input:
            inp = psbt.inputs[-1]
            inp.set(0x00, stranger.serialize())
            inp.set(0x01, stranger.outputs[0].serialize())
        if s.kind == "wsh":
            psbt.globals.set(0x01, COSIGNER_ORIGIN.to_psbt_bytes(), COSIGNER_ACCOUNT.serialize())

    def fill_change(self, psbt: Psbt, index: int) -> None:
        if not self.s.change:
            return
        out, derived = psbt.outputs[index], self.change()
        if derived.witness_script is not None:
            out.set(0x01, derived.witness_script)
        for key, origin in derived.keys:
            out.set(0x02, origin.to_psbt_bytes(), keydata=key)

    def meta(self) -> RequestMetadata:
        """Payee references (hashes only, DESIGN 8) for every payment output."""
        s = self.s
        return RequestMetadata(
            request_id=s.request_id,
            batch_id="batch-2023-11-14-01",
            requester=s.requester,
            created=s.created,
            expiry=s.expiry,
            purpose="supplier and exchange payouts",
            network=s.network,
            kind=s.request_kind,
            replaces=s.replaces,
            references={j: secret(f"payee reference {j}") for j in range(len(s.payments))},
            tip_height=s.tip_height,
        )

    def sign(self, psbt: Psbt) -> Psbt:
        s = self.s
        if s.cosigner_signs:
            psbt = self.cosign(psbt)
        if s.stranger_signature:
            info = spend_info(psbt, 0)
            digest = info.digest(SighashCache(psbt.unsigned_tx))
            sig = ecdsa.sign(secret("stranger"), digest) + bytes([SIGHASH_ALL])
            psbt.inputs[0].set(0x02, sig, keydata=pubkey("stranger"))
        return psbt

    def cosign(self, psbt: Psbt) -> Psbt:
        s = self.s
        origins = [o for inp in psbt.inputs for o in inp.bip32_derivations.values()]
        secrets = [k for o in origins if (k := cosigner_secret(o)) is not None]
        if s.cosigner_sighash != SIGHASH_ALL:
            psbt.inputs[0].set(0x03, s.cosigner_sighash.to_bytes(4, "little"))
        signed, _ = sign_psbt(psbt, secrets)
        if s.cosigner_sighash != SIGHASH_ALL:
            signed.inputs[0].delete(0x03)
        if s.bad_cosigner_signature:
            for key, origin in signed.inputs[0].bip32_derivations.items():
                sk = cosigner_secret(origin)
                if sk is not None:
                    wrong = ecdsa.sign(sk, secret("not this transaction")) + bytes([SIGHASH_ALL])
                    signed.inputs[0].set(0x02, wrong, keydata=key)
        return signed


# -- ready-made variants ------------------------------------------------------------------


def _per_tx_over(s: Scenario) -> Scenario:
    """Payment 0 raised so the total paid is the limit plus 1 sat; input 0 grows to fund it."""
    limit = make_policy(**dict(s.policy_changes)).per_tx_limit
    delta = limit + 1 - sum(a for _, a in s.payments)
    (script, amount), *rest = s.payments
    amounts = (s.input_amounts[0] + delta, *s.input_amounts[1:])
    return replace(s, payments=((script, amount + delta), *rest), input_amounts=amounts)


def _day_over(s: Scenario) -> Scenario:
    limit = make_policy(**dict(s.policy_changes)).per_day_limit
    return replace(s, spent_today_before=limit - sum(a for _, a in s.payments) + 1)


def _wsh(s: Scenario, **changes: Any) -> Scenario:
    """Signature variants need the cosigner: the wsh wallet, cosigned."""
    return replace(s, kind="wsh", cosigner_signs=True, **changes)


_ACP = SIGHASH_ALL | SIGHASH_ANYONECANPAY


def _other_wallet(s: Scenario) -> Descriptor:
    """The pinned wallet the spend does not come from."""
    return WSH_DESCRIPTOR if s.kind == "wpkh" else WPKH_DESCRIPTOR


#: name -> (how the scenario changes, the refusal codes a correct review reports, in order)
VARIANTS: dict[str, tuple[Callable[[Scenario], Scenario], tuple[str, ...]]] = {
    "change_to_foreign_address": (
        lambda s: replace(s, change_script=STRANGER),
        ("change_not_ours", "address_book"),
    ),
    "witness_utxo_amount_mismatch": (
        lambda s: replace(s, witness_utxo_delta=-100_000),
        ("utxo_mismatch",),
    ),
    "missing_non_witness_utxo": (lambda s: replace(s, drop_non_witness_utxo=True), ("malformed",)),
    "sighash_none_field": (lambda s: replace(s, sighash_field=SIGHASH_NONE), ("sighash",)),
    "sighash_single_field": (lambda s: replace(s, sighash_field=SIGHASH_SINGLE), ("sighash",)),
    "sighash_anyonecanpay_field": (lambda s: replace(s, sighash_field=_ACP), ("sighash",)),
    "sighash_none_signature": (lambda s: _wsh(s, cosigner_sighash=SIGHASH_NONE), ("sighash",)),
    "sighash_single_signature": (lambda s: _wsh(s, cosigner_sighash=SIGHASH_SINGLE), ("sighash",)),
    "sighash_anyonecanpay_signature": (lambda s: _wsh(s, cosigner_sighash=_ACP), ("sighash",)),
    "foreign_input": (lambda s: replace(s, foreign_input=80_000), ("foreign_input",)),
    "off_address_book": (
        lambda s: replace(s, payments=((STRANGER, 400_000), *s.payments[1:])),
        ("address_book",),
    ),
    "per_tx_limit_exceeded": (_per_tx_over, ("limits",)),
    "daily_limit_exceeded": (_day_over, ("limits",)),
    "excessive_fee": (lambda s: replace(s, fee=100_001), ("fee", "fee_rate")),
    "expired_request": (lambda s: replace(s, now=s.expiry + 1), ("expired",)),
    "replayed_request_id": (
        lambda s: replace(s, seen_request_ids=frozenset({s.request_id})),
        ("replayed",),
    ),
    "conflicting_spend": (lambda s: replace(s, conflict_input=0), ("conflicting_spend",)),
    "bad_cosigner_signature": (
        lambda s: _wsh(s, bad_cosigner_signature=True),
        ("bad_cosigner_signature",),
    ),
    "foreign_key_signature": (
        lambda s: replace(s, stranger_signature=True),
        ("bad_cosigner_signature",),
    ),
    "suspended_key": (lambda s: replace(s, key_state="suspended"), ("suspended_key",)),
    "archived_key": (lambda s: replace(s, key_state="archived"), ("suspended_key",)),
    "missing_request": (lambda s: replace(s, request=False), ("no_request",)),
    "two_requests": (lambda s: replace(s, second_request=True), ("no_request",)),
    "wrong_network": (lambda s: replace(s, network="mainnet"), ("network",)),
    # a pinned wallet the inputs do not spend from is paid, not "change": limits and the
    # address book apply (it may be a wallet others can spend alone)
    "change_to_other_pinned_wallet": (
        lambda s: replace(s, change_to_other_wallet=True),
        ("address_book",),
    ),
    "future_created": (
        lambda s: replace(
            s, created=s.now + 10 * 366 * 86400, expiry=s.now + 10 * 366 * 86400 + 600
        ),
        ("expired", "future_request"),
    ),
    "locktime_beyond_tip": (
        lambda s: replace(s, locktime=900_001, tip_height=900_000),
        ("timelock",),
    ),
    "locktime_without_tip": (lambda s: replace(s, locktime=900_000), ("timelock",)),
    "time_based_locktime": (
        lambda s: replace(s, locktime=1_800_000_000, tip_height=900_000),
        ("timelock",),
    ),
    "relative_lock": (lambda s: replace(s, sequence0=144), ("timelock",)),
}

#: Variants that must PASS: they look like attacks but are declared or harmless.
ACCEPTED: dict[str, Callable[[Scenario], Scenario]] = {
    "declared_replacement": lambda s: replace(
        s, conflict_input=0, request_kind="replacement", replaces=(OTHER_TXID,)
    ),
    "cosigned": lambda s: _wsh(s),
    "explicit_sighash_all": lambda s: replace(s, sighash_field=SIGHASH_ALL),
    "locktime_at_declared_tip": lambda s: replace(s, locktime=900_000, tip_height=900_000),
    "change_to_internal_wallet": lambda s: replace(
        s,
        change_to_other_wallet=True,
        policy_changes=(*s.policy_changes, ("internal_wallets", (str(_other_wallet(s)),))),
    ),
}


def variant(name: str, base: Scenario | None = None) -> Case:
    """The named attack built on ``base`` (the default valid scenario when None)."""
    base = base or Scenario()
    if name in ACCEPTED:
        return ACCEPTED[name](base).build(name, ())
    change, expected = VARIANTS[name]
    return change(base).build(name, expected)


def all_variants(base: Scenario | None = None) -> list[Case]:
    return [variant(name, base) for name in VARIANTS]


__all__ = [
    "ACCEPTED",
    "LABELS",
    "NOW",
    "OUR_SECRETS",
    "PAYEE_EXCHANGE",
    "PAYEE_SUPPLIER",
    "STRANGER",
    "VARIANTS",
    "WPKH_DESCRIPTOR",
    "WSH_DESCRIPTOR",
    "Case",
    "Scenario",
    "all_variants",
    "cosigner_secret",
    "make_policy",
    "make_wallet",
    "pubkey",
    "secret",
    "variant",
]
