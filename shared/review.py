"""What-you-see-is-what-you-sign: the appliance's review of a signing request (DESIGN 2.3, 4).

Everything shown to officers and everything judged is computed here from three things the
appliance trusts or checks itself: the PSBT object (decoded by :mod:`shared.psbt`), the
pinned wallet (descriptors and the HSM's own keys) and the installed policy. Nothing the
coordinator summarises is believed: amounts come from full previous transactions, change is
change only when its script re-derives from a pinned descriptor (derivation hints are used
only to find the index to try) *and* that descriptor is the wallet the inputs spend from
or one the policy names as internal (DESIGN 9: a pinned wallet the station does not fully
control must not make a payment look like change); labels come from the policy's address
book, and signatures already present are verified. Version, nLockTime and each input's
nSequence are part of what is signed, so they are shown and judged too.

Every problem becomes a :class:`Refusal` (a code from :data:`REFUSAL_CODES` and a message
naming the input or output and the numbers). :func:`review` collects all of them, in a
fixed order, and never raises for anything a PSBT can contain.

Size estimate (``Review.vsize``): the final transaction's virtual size from script types,
by :mod:`shared.bitcoin.size` (the model the coordinator's coin selection uses too); inputs
of unknown shape (refused anyway) count as P2WPKH. A signature one byte shorter than
assumed makes the fee rate shown lower than the real one by at most 0.25 vB per signature.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from shared import canonical
from shared.bitcoin import ecdsa
from shared.bitcoin.address import Network, network_by_name, script_to_address
from shared.bitcoin.amount import MAX_MONEY
from shared.bitcoin.bip32 import HARDENED, KeyOrigin, format_path
from shared.bitcoin.descriptor import DerivedOutput, Descriptor, DescriptorKey
from shared.bitcoin.script import classify, parse_multisig
from shared.bitcoin.sighash import SIGHASH_ALL, SighashCache
from shared.bitcoin.size import (
    MAX_STANDARD_TX_WEIGHT,
    P2WPKH_SHAPE,
    InputShape,
    estimate_weight,
    vsize_of,
)
from shared.bitcoin.tx import (
    LOCKTIME_THRESHOLD,
    SEQUENCE_LOCKTIME_DISABLE_FLAG,
    OutPoint,
    Transaction,
    TxOut,
)
from shared.checks import FieldChecks
from shared.key_models import Account, child_steps
from shared.policy import Decision, Facts, Payment, Policy, PolicyError, evaluate
from shared.psbt.model import Psbt, PsbtInput, PsbtOutput
from shared.psbt.scripts import SpendInfo, SpendKind, spend_info
from shared.request import (
    MAX_TIME,
    RequestError,
    RequestMetadata,
    hash_words,
    read_assertion,
    read_request,
)
from shared.request import request_hash as compute_request_hash
from shared.requester import Assertion, Requester, RequesterError, verify_requester

REVIEW_TYPE = "coldstation-review"
REVIEW_FORMAT = 1
KEY_STATES = ("active", "suspended", "archived")

#: Refusal codes in the order refusals are listed (DESIGN 4).
REFUSAL_CODES = (
    "malformed",  # not a PSBT we can judge: structure, missing full previous transaction
    "weight",  # heavier, signed, than Bitcoin Core relays (MAX_STANDARD_TX_WEIGHT)
    "no_request",  # request metadata missing, malformed or inconsistent with the tx
    "requester",  # no valid passkey assertion by the listed requester (policy lists them)
    "network",  # request or PSBT for another network than the policy's
    "expired",  # request past its expiry, or living longer than the policy allows
    "future_request",  # request dated ahead of the station clock beyond the allowed skew
    "replayed",  # request id already seen by this appliance
    "utxo_mismatch",  # witness UTXO disagrees with the full previous transaction
    "sighash",  # a sighash type other than ALL asked for or used
    "tx_version",  # a transaction version the policy does not sign
    "timelock",  # an absolute lock beyond the declared tip, or a relative lock, when refused
    "foreign_input",  # an input the pinned wallet does not derive
    "suspended_key",  # one of our keys needed or paid to is not active
    "bad_cosigner_signature",  # a partial signature that does not verify
    "change_not_ours",  # an output claimed as ours whose script the wallet does not derive
    "conflicting_spend",  # an input already signed in another, not declared replaced, tx
    "script_type",  # a payment to a script type the policy does not allow
    "address_book",  # a payment to an address outside the address book
    "limits",  # per-transaction or per-day limit exceeded
    "fee",  # absolute fee over the policy's maximum
    "fee_rate",  # fee rate over the policy's ceiling
    "policy",  # any other policy violation (none today; fail closed if one is added)
    "quorum",  # fewer valid approvals than the policy's quorum (decided in the ceremony)
    "officers",  # the officers stopped the ceremony (their reason is recorded)
)
_RANK = {code: rank for rank, code in enumerate(REFUSAL_CODES)}
_SIGHASH_NAMES = {0x01: "ALL", 0x02: "NONE", 0x03: "SINGLE"}
_MAX_CANDIDATES = 8
#: The highest index at which an output may pay one of our ranged wallets. Everything that
#: looks for our coins (the coordinator's gap, Core's import range, the address check, the
#: audit's derivation) stops by here, so coins sent beyond it would be lost from view.
MAX_OUR_INDEX = 20_000
_MAX_CACHE = 4096


class ReviewError(ValueError):
    """A caller mistake (bad arguments, a wallet that cannot be pinned), or signing refused."""


_check = FieldChecks(ReviewError)


# -- the pinned wallet --------------------------------------------------------------------


@dataclass(frozen=True)
class OurKey:
    """A key the appliance's HSM holds; only ``active`` keys may sign or receive change.

    ``account`` is set for a bip32-seed key (shared.key_models): ``pubkey`` is then the
    account's key, and a descriptor holds it as that extended key, never as a plain key.
    """

    pubkey: bytes
    label: str
    state: str = "active"
    account: Account | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.pubkey, bytes) or len(self.pubkey) != 33:
            raise ReviewError("an HSM public key must be 33 bytes (compressed)")
        if not ecdsa.is_valid_pubkey(self.pubkey):
            raise ReviewError(f"HSM key {self.label!r} is not a valid public key")
        if not isinstance(self.label, str) or not self.label:
            raise ReviewError("an HSM key needs a label")
        if self.state not in KEY_STATES:
            raise ReviewError(f"key state {self.state!r} is not one of {', '.join(KEY_STATES)}")
        if self.account is not None and self.account.public_key != self.pubkey:
            raise ReviewError(f"HSM key {self.label!r}: its account is another key")

    def holds(self, key: DescriptorKey) -> bool:
        """True when a descriptor's key expression is this key: the plain public key of an
        hsm-key, or the account extended key of a bip32-seed key."""
        if self.account is not None:
            return self.account.holds(key)
        return key.xpub is None and key.pubkey == self.pubkey


@dataclass(frozen=True)
class ChildKey:
    """The key that signs for one script: our key's child at ``path`` (empty for an
    hsm-key, whose own key signs)."""

    pubkey: bytes
    path: tuple[int, ...]


@dataclass(frozen=True)
class WalletMatch:
    """A script re-derived from pinned descriptor ``position`` at (``change``, ``index``)."""

    descriptor: Descriptor
    position: int
    index: int
    change: bool
    derived: DerivedOutput
    our_key: OurKey
    signer: ChildKey

    def describe(self) -> str:
        branch = "change" if self.change else "receive"
        ranged = f" {branch} index {self.index}" if self.descriptor.is_ranged else ""
        return f"wallet {self.position} ({self.descriptor.script_type.value}){ranged}"


def pool_change(output: Descriptor, spent: Iterable[Descriptor]) -> bool:
    """A key pool's change: inputs that spend only ``hsm-key`` wallets (one plain key),
    paying another such wallet. Every pinned descriptor holds exactly one of the station's
    keys, so a one-key wallet is spendable by this station alone, under the same policy and
    quorum: moving coins between two of them pays nobody. An ``hsm-key`` has one address,
    so the coordinator sends a pool's change to the pool's next key; counting it as paid
    out would charge the whole coin against the limits. Wallets with other keys (a vault)
    and ranged accounts (which have their own change branch) are never reached this way.
    The station's review and the audit's re-derivation (shared.audit.change, which also
    requires each key to be one the journal registered) both use this."""
    inputs = list(spent)
    return pool_key(output) is not None and bool(inputs) and all(pool_key(d) for d in inputs)


def pool_key(descriptor: Descriptor) -> bytes | None:
    """The plain public key of a one-key, unranged wallet (an ``hsm-key``), else None."""
    keys = descriptor.keys
    if len(keys) != 1 or keys[0].xpub is not None:
        return None
    return keys[0].pubkey


@dataclass(frozen=True)
class PinnedWallet:
    """Descriptors pinned on the appliance plus the keys its HSM holds, with their states.

    Each descriptor must contain exactly one of the HSM's keys as a plain public key: the
    HSM has no BIP-32, and an appliance never holds two keys of one wallet (REQUIREMENTS 26).
    """

    descriptors: tuple[Descriptor, ...]
    keys: tuple[OurKey, ...]
    _by_pubkey: dict[bytes, OurKey] = field(init=False, repr=False, compare=False)
    _own: tuple[tuple[OurKey, int], ...] = field(init=False, repr=False, compare=False)
    _fixed: dict[bytes, WalletMatch] = field(init=False, repr=False, compare=False)
    _fingerprints: frozenset[bytes] = field(init=False, repr=False, compare=False)
    _cache: dict[tuple[int, int, bool], DerivedOutput] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        descriptors, keys = tuple(self.descriptors), tuple(self.keys)
        if not descriptors or not all(isinstance(d, Descriptor) for d in descriptors):
            raise ReviewError("a pinned wallet needs at least one Descriptor")
        if not all(isinstance(k, OurKey) for k in keys):
            raise ReviewError("pinned wallet keys must be OurKey entries")
        by_pubkey = {k.pubkey: k for k in keys}
        if len(by_pubkey) != len(keys):
            raise ReviewError("the same HSM key is listed twice")
        self._set(descriptors=descriptors, keys=keys, _by_pubkey=by_pubkey, _cache={})
        self._set(_own=tuple(self._own_key(i, d) for i, d in enumerate(descriptors)))
        self._set(_fixed=self._fixed_scripts(), _fingerprints=self._wallet_fingerprints())

    def _set(self, **values: object) -> None:
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def _own_key(self, position: int, descriptor: Descriptor) -> tuple[OurKey, int]:
        """(our key, its place among the descriptor's keys)."""
        ours = [
            (key, place)
            for place, described in enumerate(descriptor.keys)
            for key in self.keys
            if key.holds(described)
        ]
        if len(ours) != 1:
            raise ReviewError(
                f"pinned descriptor {position} holds {len(ours)} of this appliance's keys; "
                "it must hold exactly one"
            )
        return ours[0]

    def _fixed_scripts(self) -> dict[bytes, WalletMatch]:
        """Scripts of the non-ranged descriptors: found without any hint."""
        fixed: dict[bytes, WalletMatch] = {}
        for position, descriptor in enumerate(self.descriptors):
            if descriptor.is_ranged:
                continue
            for change in _branches(descriptor):
                found = self._make_match(position, 0, change)
                fixed.setdefault(found.derived.script_pubkey, found)
        return fixed

    def _wallet_fingerprints(self) -> frozenset[bytes]:
        """Master fingerprints of every wallet key, as derivation hints would name them."""
        return frozenset(key.derive(0)[1].fingerprint for d in self.descriptors for key in d.keys)

    def key(self, pubkey: bytes) -> OurKey | None:
        return self._by_pubkey.get(pubkey)

    def _derive(self, position: int, index: int, change: bool) -> DerivedOutput:
        slot = (position, index, change)
        derived = self._cache.get(slot)
        if derived is None:
            if len(self._cache) >= _MAX_CACHE:
                self._cache.clear()
            derived = self.descriptors[position].derive(index, change)
            self._cache[slot] = derived
        return derived

    def _make_match(self, position: int, index: int, change: bool) -> WalletMatch:
        derived = self._derive(position, index, change)
        descriptor = self.descriptors[position]
        our_key, place = self._own[position]
        branch = 1 if change and descriptor.branch_count >= 2 else 0
        described = descriptor.keys[place]
        child = described.derive(index, branch)[0]
        signer = ChildKey(child, child_steps(described, index, branch))
        return WalletMatch(descriptor, position, index, change, derived, our_key, signer)

    def match(
        self, script_pubkey: bytes, hints: Mapping[bytes, KeyOrigin] | None = None
    ) -> WalletMatch | None:
        """The pinned descriptor position that derives ``script_pubkey``, or None.

        For ranged descriptors the candidate indexes come from the hints (the last path
        element of each key origin); each candidate is re-derived and compared, so a
        hint only says where to look, never what is ours.
        """
        found = self._fixed.get(script_pubkey)
        if found is not None:
            return found
        for index in _candidate_indexes(hints or {}):
            for position, descriptor in enumerate(self.descriptors):
                if not descriptor.is_ranged:
                    continue
                for change in _branches(descriptor):
                    if self._derive(position, index, change).script_pubkey == script_pubkey:
                        return self._make_match(position, index, change)
        return None

    def search(self, script_pubkey: bytes, max_index: int) -> WalletMatch | None:
        """Which pinned wallet, branch and index pays ``script_pubkey``, looking at indexes
        0..``max_index`` of every ranged descriptor (the address check: COLDCARD's address
        explorer); None when none does."""
        found = self._fixed.get(script_pubkey)
        if found is not None:
            return found
        for position, descriptor in enumerate(self.descriptors):
            if not descriptor.is_ranged:
                continue
            for index in range(max_index + 1):
                for change in _branches(descriptor):
                    if descriptor.derive(index, change).script_pubkey == script_pubkey:
                        return self._make_match(position, index, change)
        return None

    def claims_ours(self, hints: Mapping[bytes, KeyOrigin], scripts: Iterable[bytes]) -> bool:
        """True when PSBT data says a script is this wallet's: our keys or fingerprints in
        the derivation hints, or one of our keys inside a given witness/redeem script (a
        bip32 child inside a script is caught by its hint's fingerprint)."""
        for pubkey, origin in hints.items():
            if pubkey in self._by_pubkey or origin.fingerprint in self._fingerprints:
                return True
        for script in scripts:
            multisig = parse_multisig(script)
            if multisig is not None and any(k in self._by_pubkey for k in multisig.pubkeys):
                return True
        return False

    def network_kinds(self) -> set[Network]:
        """MAINNET/TESTNET families named by the descriptors' xpubs (empty for hex keys)."""
        return {d.network for d in self.descriptors if d.network is not None}


def _branches(descriptor: Descriptor) -> tuple[bool, ...]:
    return (False, True) if descriptor.branch_count >= 2 else (False,)


def _candidate_indexes(hints: Mapping[bytes, KeyOrigin]) -> list[int]:
    """Unhardened last path elements of the hints, smallest first, at most a few."""
    indexes = {o.path[-1] for o in hints.values() if o.path and o.path[-1] < HARDENED}
    return sorted(indexes)[:_MAX_CANDIDATES]


# -- the review ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


@dataclass(frozen=True)
class OutputView:
    """One output as shown: the label comes from the policy, change from the wallet."""

    index: int
    amount: int
    script_pubkey: bytes
    address: str | None
    script_type: str
    label: str | None
    is_change: bool
    wallet: WalletMatch | None = None
    reference: bytes | None = None

    def to_plain(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "amount": self.amount,
            "address": self.address,
            "script": self.script_pubkey,
            "script_type": self.script_type,
            "label": self.label,
            "is_change": self.is_change,
            "change_path": self.wallet.describe() if self.wallet else None,
            "reference": self.reference,
        }


@dataclass(frozen=True)
class InputView:
    """One input as shown: amount from the full previous transaction, owner from the wallet."""

    index: int
    outpoint: OutPoint
    amount: int | None
    script_type: str
    owner: str  # "ours" or "foreign"
    wallet: WalletMatch | None
    sighash_type: int | None  # PSBT_IN_SIGHASH_TYPE; None means the default, ALL
    signed_by: tuple[bytes, ...] = ()
    sequence: int = 0xFFFFFFFF

    @property
    def key(self) -> OurKey | None:
        return self.wallet.our_key if self.wallet else None

    def _key_path(self) -> str | None:
        """Where a bip32 key's signing child sits under its account (``m/0/5``)."""
        if self.wallet is None or not self.wallet.signer.path:
            return None
        return format_path(self.wallet.signer.path)

    def to_plain(self) -> dict[str, Any]:
        key = self.key
        return {
            "index": self.index,
            "outpoint": str(self.outpoint),
            "amount": self.amount,
            "script_type": self.script_type,
            "owner": self.owner,
            "key_label": key.label if key else None,
            "key": key.pubkey if key else None,
            "key_path": self._key_path(),
            "wallet": self.wallet.describe() if self.wallet else None,
            "sighash_type": self.sighash_type,
            "signed_by": ",".join(k.hex() for k in self.signed_by),
            "sequence": self.sequence,
        }


@dataclass(frozen=True)
class Review:
    """The decoded request, the policy decision and every reason to refuse it.

    ``fee_rate`` is in sat/kvB (the policy's unit), rounded up so it shows above the
    ceiling exactly when the policy finds it above. Amounts are satoshis; None where the
    PSBT does not let the appliance know (an input without its full previous transaction,
    an amount out of range: refused as malformed).
    """

    request: RequestMetadata | None
    request_hash: bytes | None
    hash_words: str | None
    network: str | None
    txid: bytes | None
    inputs: tuple[InputView, ...]
    outputs: tuple[OutputView, ...]
    total_in: int | None
    total_out: int | None
    paid_to_others: int | None
    fee: int | None
    vsize: int
    fee_rate: int | None
    facts: Facts | None
    decision: Decision | None
    refusals: tuple[Refusal, ...]
    tx_version: int | None = None
    locktime: int | None = None
    assertion: Assertion | None = None  # the requester's, as the PSBT carried it
    requester: Requester | None = None  # verified (only when the policy lists requesters)

    @property
    def relative_locks(self) -> int:
        """Inputs whose nSequence sets a BIP-68 relative lock (shown and judged)."""
        return sum(1 for i in self.inputs if has_relative_lock(self.tx_version, i.sequence))

    @property
    def approved_for_signing(self) -> bool:
        return not self.refusals and self.decision is not None and self.decision.approved

    @property
    def paid_out(self) -> int | None:
        """Alias of ``paid_to_others``."""
        return self.paid_to_others

    @property
    def refusal_codes(self) -> tuple[str, ...]:
        """Distinct codes, in refusal order."""
        return tuple(dict.fromkeys(r.code for r in self.refusals))

    def to_plain(self) -> dict[str, Any]:
        """The display transcript, canonical-CBOR-ready and shaped to fit a journal record's
        details even nested one level down: text keys, at most three levels deep, no None
        (absent fields are unknown or not applicable)."""
        return _map_without_none(
            {
                "type": REVIEW_TYPE,
                "format": REVIEW_FORMAT,
                "request": _request_plain(self.request),
                "request_hash": self.request_hash,
                "hash_words": self.hash_words,
                "network": self.network,
                "txid": self.txid,
                "tx_version": self.tx_version,
                "locktime": self.locktime,
                "inputs": [i.to_plain() for i in self.inputs],
                "outputs": [o.to_plain() for o in self.outputs],
                "total_in": self.total_in,
                "total_out": self.total_out,
                "paid_to_others": self.paid_to_others,
                "fee": self.fee,
                "vsize": self.vsize,
                "fee_rate_sat_per_kvb": self.fee_rate,
                "facts": _facts_plain(self.facts),
                "decision": _decision_plain(self.decision),
                "refusals": [[r.code, r.message] for r in self.refusals],
                "approved_for_signing": self.approved_for_signing,
                "requester_assertion": self.assertion.to_plain() if self.assertion else None,
                "requester_verified": self.requester.name if self.requester else None,
            }
        )

    def transcript_hash(self) -> bytes:
        """SHA-256 of the canonical transcript, for the journal record's subjects."""
        return canonical.digest(self.to_plain())


def _map_without_none(value: dict[str, Any]) -> dict[str, Any]:
    """Maps lose their None fields, recursively (absent means unknown or not applicable)."""
    return {
        k: _without_none(v) if type(v) in _CONTAINERS else v
        for k, v in value.items()
        if v is not None
    }


def _without_none(value: Any) -> Any:
    if isinstance(value, dict):
        return _map_without_none(value)
    if isinstance(value, list):
        return [_without_none(v) if type(v) in _CONTAINERS else v for v in value]
    return value


_CONTAINERS = frozenset({dict, list})


def _request_plain(meta: RequestMetadata | None) -> dict[str, Any] | None:
    """The request's fields; its payee references are shown with their outputs."""
    if meta is None:
        return None
    plain = meta.to_plain()
    del plain["references"]
    return plain


def _facts_plain(facts: Facts | None) -> dict[str, Any] | None:
    """The evaluator's facts; its payments are the outputs (script, amount, is_change)."""
    if facts is None:
        return None
    return {
        "network": facts.network,
        "request_time": facts.request_time,
        "request_expiry": facts.request_expiry,
        "request_created": facts.request_created,
        "fee": facts.fee,
        "vsize": facts.vsize,
        "spent_today_before": facts.spent_today_before,
        "tx_version": facts.tx_version,
        "locktime": facts.locktime,
        "relative_locks": facts.relative_locks,
        "tip_height": facts.tip_height,
    }


def _decision_plain(decision: Decision | None) -> dict[str, Any] | None:
    """The verdict with its checks as a name -> result map (violations start "violation")."""
    if decision is None:
        return None
    return {"approved": decision.approved, "checks": dict(decision.checks)}


def requester_line(review_: Review) -> str:
    """Who asks, as officers are shown it: verified by passkey, refused as not verified, or
    taken on trust from the request (a policy that lists no requesters)."""
    named = review_.request.requester if review_.request else "-"
    if review_.requester is not None:
        return f"{named} (passkey verified)"
    if "requester" in review_.refusal_codes:
        return f"{named} (NOT verified: see the refusal)"
    return f"{named} (unverified: the policy lists no requesters)"


def review_locks_text(review_: Review) -> str:
    """Version, nLockTime and nSequence in one line, as officers read them on every review:
    all three are part of what is signed."""
    lock = review_.locktime or 0
    if lock == 0:
        lock_text = "no nLockTime"
    elif lock < LOCKTIME_THRESHOLD:
        lock_text = f"nLockTime block {lock}"
    else:
        lock_text = f"nLockTime time {lock}"
    sequences = sorted({f"{i.sequence:#010x}" for i in review_.inputs})
    relative = review_.relative_locks
    rel_text = f"{relative} input(s) with a relative lock" if relative else "no relative lock"
    return (
        f"version {review_.tx_version}, {lock_text}, {rel_text} "
        f"(nSequence {', '.join(sequences) or 'none'})"
    )


def has_relative_lock(tx_version: int | None, sequence: int) -> bool:
    """BIP-68: with version 2 or more, an nSequence without the disable bit is a lock."""
    if tx_version is None or tx_version < 2:
        return False
    return not sequence & SEQUENCE_LOCKTIME_DISABLE_FLAG


def inputs_to_sign(review_: Review) -> list[tuple[int, bytes]]:
    """(input index, the public key that signs it: our hsm-key, or our bip32 key's child)
    for every input the appliance signs.

    Raises ReviewError unless the review approved the request: the signer must never sign
    on a review that refused (approval quorum is checked separately, on the request hash).
    """
    if not review_.approved_for_signing:
        reasons = "; ".join(str(r) for r in review_.refusals) or "the policy did not approve"
        raise ReviewError(f"signing refused: {reasons}")
    return [(i.index, i.wallet.signer.pubkey) for i in review_.inputs if i.wallet is not None]


# -- the reviewer -------------------------------------------------------------------------


class SeenIds(Protocol):
    def __contains__(self, request_id: object) -> bool: ...


class Spenders(Protocol):
    def get(self, outpoint: OutPoint, default: bytes | None = None) -> bytes | None: ...


@dataclass
class _Context:
    now: int
    seen_request_ids: SeenIds
    signed_outpoints: Spenders
    spent_today_before: int


def review(
    psbt: Psbt,
    wallet: PinnedWallet,
    policy: Policy,
    *,
    now: int,
    seen_request_ids: SeenIds | Iterable[bytes],
    signed_outpoints: Spenders | Mapping[OutPoint, bytes],
    spent_today_before: int,
) -> Review:
    """Decode, check and judge ``psbt`` for signing; see the module docstring.

    ``now`` is the appliance's UTC time, ``seen_request_ids`` (anything answering ``in``),
    ``signed_outpoints`` (``.get(outpoint)`` -> txid, internal byte order, of the
    transaction we signed spending it) and ``spent_today_before`` come from the appliance's
    own journal (:mod:`shared.station`). Raises ReviewError only
    for bad arguments; anything wrong with the PSBT is a refusal.
    """
    ctx = _check_arguments(
        psbt, wallet, policy, now, seen_request_ids, signed_outpoints, spent_today_before
    )
    try:
        return _Reviewer(psbt, wallet, policy, ctx).run()
    except (ValueError, IndexError, KeyError, TypeError, OverflowError) as exc:
        # Fail closed: a PSBT that trips anything unforeseen is refused, never signed.
        return _failed(f"the PSBT could not be reviewed: {exc}")


def _check_arguments(
    psbt: object,
    wallet: object,
    policy: object,
    now: object,
    seen: object,
    signed: object,
    spent_today: object,
) -> _Context:
    if not isinstance(psbt, Psbt) or not isinstance(wallet, PinnedWallet):
        raise ReviewError("review needs a Psbt and a PinnedWallet")
    if not isinstance(policy, Policy):
        raise ReviewError("review needs the installed Policy")
    if not callable(getattr(signed, "get", None)):
        raise ReviewError("signed_outpoints must map OutPoint to txid")
    if isinstance(seen, list | tuple):
        seen = frozenset(seen)
    if not hasattr(seen, "__contains__") or isinstance(seen, str | bytes):
        raise ReviewError("seen_request_ids must be a set of request ids")
    return _Context(
        _check.integer(now, "now", 0, MAX_TIME),
        seen,
        signed,  # type: ignore[arg-type]
        _check.integer(spent_today, "spent_today_before", 0, 2**63 - 1),
    )


def _failed(message: str) -> Review:
    return _undecodable((Refusal("malformed", message),))


def _undecodable(refusals: tuple[Refusal, ...]) -> Review:
    """A review of a PSBT whose transaction could not be read: nothing to show but why."""
    return Review(
        request=None,
        request_hash=None,
        hash_words=None,
        network=None,
        txid=None,
        inputs=(),
        outputs=(),
        total_in=None,
        total_out=None,
        paid_to_others=None,
        fee=None,
        vsize=1,
        fee_rate=None,
        facts=None,
        decision=None,
        refusals=refusals,
    )


def _sighash_name(hash_type: int) -> str:
    base = _SIGHASH_NAMES.get(hash_type & 0x1F, f"{hash_type & 0xFFFFFFFF:#x}")
    return base + ("|ANYONECANPAY" if hash_type & 0x80 else "")


def _short(data: bytes) -> str:
    return data.hex()[:16] + "..."


class _Reviewer:
    """One review: accumulates refusals while decoding inputs, outputs and the request."""

    def __init__(self, psbt: Psbt, wallet: PinnedWallet, policy: Policy, ctx: _Context) -> None:
        self.psbt, self.wallet, self.policy, self.ctx = psbt, wallet, policy, ctx
        self.net = network_by_name(policy.network)
        self.refusals: list[Refusal] = []
        self.meta: RequestMetadata | None = None
        self.spends: dict[int, SpendInfo] = {}
        self.cache: SighashCache | None = None
        self.input_wallets: set[int] = set()  # pinned descriptor positions the inputs spend
        self.references: dict[int, bytes] = {}
        self.internal = set(getattr(policy, "internal_wallets", ()))

    def refuse(self, code: str, message: str) -> None:
        self.refusals.append(Refusal(code, message))

    # -- driver ------------------------------------------------------------------------

    def run(self) -> Review:
        tx = self._transaction()
        if tx is None:
            return _undecodable(tuple(self.refusals))
        self.meta = self._request(tx)
        # payee references by output, built once (RequestMetadata.reference_for builds this
        # map on every call: once per output, that is quadratic in a batch's outputs)
        self.references = dict(self.meta.references) if self.meta else {}
        self.cache = SighashCache(tx)
        inputs = tuple(self._input(i, tx) for i in range(len(tx.inputs)))
        self.input_wallets = {i.wallet.position for i in inputs if i.wallet is not None}
        outputs = tuple(self._output(j, out) for j, out in enumerate(tx.outputs))
        self._network_evidence()
        self._conflicts(tx)
        weight = estimate_weight(tx, [self._shape(i) for i in inputs])
        if weight > MAX_STANDARD_TX_WEIGHT:
            self.refuse(
                "weight",
                f"signed, the transaction would weigh up to {weight} WU, "
                f"above the {MAX_STANDARD_TX_WEIGHT} WU nodes relay",
            )
        return self._result(tx, inputs, outputs, vsize_of(weight))

    def _result(
        self,
        tx: Transaction,
        inputs: tuple[InputView, ...],
        outputs: tuple[OutputView, ...],
        vsize: int,
    ) -> Review:
        total_in = self._total("inputs", [i.amount for i in inputs])
        total_out = self._total("outputs", [o.amount for o in outputs])
        paid = self._total("", [o.amount for o in outputs if not o.is_change])
        fee = None if total_in is None or total_out is None else total_in - total_out
        if fee is not None and fee < 0:
            self.refuse(
                "malformed", f"outputs total {total_out} sat but inputs total only {total_in} sat"
            )
        facts, decision = self._decide(tx, outputs, fee, vsize)
        digest = self._request_hash()
        assertion, requester = self._requester(digest)
        fee_rate = None if fee is None or fee < 0 else -(-fee * 1000 // vsize)
        refusals = tuple(sorted(self.refusals, key=lambda r: _RANK[r.code]))
        return Review(
            self.meta,
            digest,
            hash_words(digest) if digest else None,
            self.meta.network if self.meta else None,
            tx.txid,
            inputs,
            outputs,
            total_in,
            total_out,
            paid,
            fee,
            vsize,
            fee_rate,
            facts,
            decision,
            refusals,
            tx.version,
            tx.locktime,
            assertion,
            requester,
        )

    def _total(self, what: str, amounts: list[int | None]) -> int | None:
        """A sum of amounts; None when one is unknown or out of range (refused already) or
        the sum is more money than can exist (refused here when ``what`` names it)."""
        if any(a is None or not 0 <= a <= MAX_MONEY for a in amounts):
            return None
        total = sum(a for a in amounts if a is not None)
        if total <= MAX_MONEY:
            return total
        if what:
            self.refuse("malformed", f"{what} total {total} sat, more than 21 million BTC")
        return None

    # -- structure and request ---------------------------------------------------------

    def _transaction(self) -> Transaction | None:
        psbt = self.psbt
        try:
            tx = psbt.unsigned_tx
            if psbt.version != 0:
                psbt.to_v0()
        except ValueError as exc:
            self.refuse("malformed", f"cannot be written as a version 0 PSBT: {exc}")
            return None
        if len(psbt.inputs) != len(tx.inputs) or len(psbt.outputs) != len(tx.outputs):
            self.refuse(
                "malformed", "the PSBT's maps do not match the transaction's inputs and outputs"
            )
            return None
        self._tx_shape(tx)
        return tx

    def _tx_shape(self, tx: Transaction) -> None:
        if not tx.inputs or not tx.outputs:
            self.refuse(
                "malformed",
                f"the transaction has {len(tx.inputs)} inputs and {len(tx.outputs)} outputs",
            )
        seen: dict[OutPoint, int] = {}
        for index, txin in enumerate(tx.inputs):
            if txin.prevout in seen:
                self.refuse(
                    "malformed",
                    f"inputs {seen[txin.prevout]} and {index} both spend {txin.prevout}",
                )
            seen.setdefault(txin.prevout, index)
        for index, out in enumerate(tx.outputs):
            if not 0 <= out.value <= MAX_MONEY:
                self.refuse("malformed", f"output {index} amount {out.value} sat is out of range")

    def _request(self, tx: Transaction) -> RequestMetadata | None:
        try:
            meta = read_request(self.psbt)
        except RequestError as exc:
            self.refuse("no_request", str(exc))
            return None
        for index, _ in meta.references:
            if index >= len(tx.outputs):
                self.refuse(
                    "no_request",
                    f"the request has a payee reference for output "
                    f"{index}, but the transaction has only {len(tx.outputs)} outputs",
                )
        if meta.request_id in self.ctx.seen_request_ids:
            self.refuse(
                "replayed",
                f"request {meta.request_id.hex()} was already presented to this appliance",
            )
        return meta

    def _requester(self, digest: bytes | None) -> tuple[Assertion | None, Requester | None]:
        """The requester's assertion, and who it proves asked when the policy lists
        requesters (refused when it proves no listed, active requester who is the one the
        request names). A request that cannot be hashed is refused already."""
        try:
            assertion = read_assertion(self.psbt)
        except RequestError as exc:
            self.refuse("requester", str(exc))
            return None, None
        if not self.policy.requesters or digest is None or self.meta is None:
            return assertion, None
        try:
            requester = verify_requester(
                self.policy.requesters, assertion, digest, self.meta.requester
            )
        except RequesterError as exc:
            self.refuse("requester", str(exc))
            return assertion, None
        return assertion, requester

    def _request_hash(self) -> bytes | None:
        if self.meta is None:
            return None
        try:
            return compute_request_hash(self.psbt, self.meta)
        except RequestError:
            return None  # already refused as malformed (no full previous transaction)

    # -- inputs ------------------------------------------------------------------------

    def _input(self, index: int, tx: Transaction) -> InputView:
        inp = self.psbt.inputs[index]
        prevout = tx.inputs[index].prevout
        utxo = self._trusted_utxo(index, inp, prevout)
        shown = utxo or inp.witness_utxo
        script = shown.script_pubkey if shown else b""
        found = self.wallet.match(script, inp.bip32_derivations) if shown else None
        self._sighash(index, inp)
        self._ownership(index, prevout, utxo, found)
        if utxo is not None and self._consistent(index, inp, utxo):
            self._resolve(index, inp, found)
            self._signatures(index, inp)
        if inp.is_finalized:
            self.refuse("malformed", f"input {index} is already finalized")
        return InputView(
            index,
            prevout,
            utxo.value if utxo else None,
            classify(script).value if shown else "unknown",
            "ours" if found else "foreign",
            found,
            inp.sighash_type,
            tuple(sorted(inp.partial_sigs)),
            tx.inputs[index].sequence,
        )

    def _trusted_utxo(self, index: int, inp: PsbtInput, prevout: OutPoint) -> TxOut | None:
        """The spent output from the full previous transaction, the only amount we trust."""
        prev = inp.non_witness_utxo
        if prev is None:
            self.refuse(
                "malformed",
                f"input {index} has no full previous transaction "
                "(non_witness_utxo), so its amount cannot be verified",
            )
            return None
        # the txid hashed from the record's bytes (the transaction without witness, what
        # ``prev.txid`` would serialize again): one hash per input, no re-serialization
        if inp.non_witness_utxo_txid() != prevout.txid or prevout.vout >= len(prev.outputs):
            self.refuse(
                "malformed",
                f"input {index}: the previous transaction given is "
                f"{prev.txid_hex}, which does not hold {prevout}",
            )
            return None
        utxo = prev.outputs[prevout.vout]
        if not 0 <= utxo.value <= MAX_MONEY:
            self.refuse("malformed", f"input {index} amount {utxo.value} sat is out of range")
            return None
        return utxo

    def _consistent(self, index: int, inp: PsbtInput, utxo: TxOut) -> bool:
        claimed = inp.witness_utxo
        if claimed is None or claimed == utxo:
            return True
        problem = f"input {index}: the witness UTXO says {claimed.value} sat"
        if claimed.script_pubkey != utxo.script_pubkey:
            problem += f" to script {_short(claimed.script_pubkey)}"
        problem += f", the full previous transaction says {utxo.value} sat"
        if claimed.script_pubkey != utxo.script_pubkey:
            problem += f" to script {_short(utxo.script_pubkey)}"
        self.refuse("utxo_mismatch", problem)
        return False

    def _sighash(self, index: int, inp: PsbtInput) -> None:
        asked = inp.sighash_type
        if asked is not None and asked != SIGHASH_ALL:
            self.refuse(
                "sighash",
                f"input {index} asks for sighash {_sighash_name(asked)}; only ALL is signed",
            )
        for pubkey, sig in sorted(inp.partial_sigs.items()):
            if sig[-1] != SIGHASH_ALL:
                self.refuse(
                    "sighash",
                    f"input {index}: the signature by {_short(pubkey)} uses "
                    f"sighash {_sighash_name(sig[-1])}, not ALL",
                )

    def _ownership(
        self, index: int, prevout: OutPoint, utxo: TxOut | None, found: WalletMatch | None
    ) -> None:
        if found is None:
            amount = f" ({utxo.value} sat)" if utxo else ""
            self.refuse(
                "foreign_input",
                f"input {index} spends {prevout}{amount}, which the "
                "pinned wallet does not derive; mixing in foreign inputs is not supported",
            )
            return
        key = found.our_key
        if key.state != "active":
            self.refuse(
                "suspended_key",
                f"input {index} needs key {key.label!r} "
                f"({_short(key.pubkey)}), which is {key.state}",
            )

    def _resolve(self, index: int, inp: PsbtInput, found: WalletMatch | None) -> None:
        """How the input is spent, from the PSBT's scripts; ours must resolve cleanly."""
        if found is None and not inp.partial_sigs:
            return
        try:
            self.spends[index] = spend_info(self.psbt, index)
        except ValueError as exc:
            if found is not None:
                self.refuse("malformed", f"input {index}: {exc}")

    def _signatures(self, index: int, inp: PsbtInput) -> None:
        """Every partial signature present must be by a key of the script and verify."""
        info = self.spends.get(index)
        if info is None:
            return
        for pubkey, sig in sorted(inp.partial_sigs.items()):
            if not info.may_sign(pubkey):
                self.refuse(
                    "bad_cosigner_signature",
                    f"input {index}: signature by {_short(pubkey)}, which is not a key "
                    "of this input's script",
                )
            elif not ecdsa.verify(pubkey, sig[:-1], info.digest(self._cache(), sig[-1])):
                self.refuse(
                    "bad_cosigner_signature",
                    f"input {index}: the signature by {_short(pubkey)} does not verify",
                )

    def _cache(self) -> SighashCache:
        if self.cache is None:
            self.cache = SighashCache(self.psbt.unsigned_tx)
        return self.cache

    # -- outputs -----------------------------------------------------------------------

    def _output(self, index: int, out: TxOut) -> OutputView:
        omap: PsbtOutput = self.psbt.outputs[index]
        hints = omap.bip32_derivations
        found = self.wallet.match(out.script_pubkey, hints)
        address = script_to_address(out.script_pubkey, self.net)
        shown = address or "script " + _short(out.script_pubkey)
        if found is None:
            scripts = [s for s in (omap.witness_script, omap.redeem_script) if s is not None]
            if self.wallet.claims_ours(hints, scripts):
                self.refuse(
                    "change_not_ours",
                    f"output {index} ({out.value} sat to {shown}) "
                    "is marked as our wallet's, but its script does "
                    "not derive from the pinned wallet",
                )
        elif found.index > MAX_OUR_INDEX:
            self.refuse(
                "change_not_ours",
                f"output {index} ({out.value} sat to {shown}) pays our wallet at index "
                f"{found.index}, beyond {MAX_OUR_INDEX}: no wallet scan would find those coins",
            )
        elif found.our_key.state != "active":
            self.refuse(
                "suspended_key",
                f"output {index} sends {out.value} sat to "
                f"key {found.our_key.label!r}, which is {found.our_key.state}",
            )
        return OutputView(
            index,
            out.value,
            out.script_pubkey,
            address,
            classify(out.script_pubkey).value,
            self.policy.label_for(out.script_pubkey),
            found is not None and self._is_change(found),
            found,
            self.references.get(index),
        )

    def _is_change(self, found: WalletMatch) -> bool:
        """Change pays the change branch (when the wallet has one) of the wallet the inputs
        spend from, of one the policy calls internal, or, from a key pool, another of this
        station's single-key wallets (:func:`pool_change`); a receive address, or any other
        pinned wallet, is paid like an outside address (limits apply)."""
        if found.descriptor.branch_count >= 2 and not found.change:
            return False
        if found.position in self.input_wallets or str(found.descriptor) in self.internal:
            return True
        spent = [self.wallet.descriptors[position] for position in self.input_wallets]
        return pool_change(found.descriptor, spent)

    # -- whole-transaction checks ------------------------------------------------------

    def _network_evidence(self) -> None:
        """xpubs carry a mainnet/testnet version: they must agree with the policy."""
        kind = self.net.kind
        for xpub in self.psbt.xpubs:
            version = int.from_bytes(xpub[:4], "big")
            if version not in (kind.xpub_version, kind.xprv_version):
                self.refuse(
                    "network",
                    f"the PSBT carries an extended key with version "
                    f"{version:#010x}, not a {kind.label} key; the policy "
                    f"is for {self.policy.network}",
                )
        for other in self.wallet.network_kinds() - {kind}:
            self.refuse(
                "network",
                f"the pinned wallet has {other.label} keys; the policy is "
                f"for {self.policy.network}",
            )

    def _conflicts(self, tx: Transaction) -> None:
        replaces = set(self.meta.replaces) if self.meta else set()
        txid = tx.txid  # once: hashing the transaction per input is quadratic (a replacement
        for index, txin in enumerate(tx.inputs):  # has every input already signed)
            spender = self.ctx.signed_outpoints.get(txin.prevout)
            if spender is None or spender == txid or spender in replaces:
                continue
            self.refuse(
                "conflicting_spend",
                f"input {index} spends {txin.prevout}, already "
                f"signed in transaction {spender[::-1].hex()}; "
                "only a replacement request listing that transaction may spend it again",
            )

    def _decide(
        self, tx: Transaction, outputs: tuple[OutputView, ...], fee: int | None, vsize: int
    ) -> tuple[Facts | None, Decision | None]:
        meta = self.meta
        if meta is None or fee is None or fee < 0:
            return None, None
        try:
            payments = tuple(Payment(o.script_pubkey, o.amount, o.is_change) for o in outputs)
            facts = Facts(
                meta.network,
                self.ctx.now,
                meta.expiry,
                payments,
                fee,
                vsize,
                self.ctx.spent_today_before,
                meta.created,
                tx.version,
                tx.locktime,
                sum(1 for txin in tx.inputs if has_relative_lock(tx.version, txin.sequence)),
                meta.tip_height,
            )
        except PolicyError as exc:
            self.refuse("malformed", f"cannot evaluate the policy: {exc}")
            return None, None
        decision = evaluate(self.policy, facts)
        for violation in decision.violations:
            self.refuse(_violation_code(violation), violation)
        return facts, decision

    # -- size --------------------------------------------------------------------------

    def _shape(self, view: InputView) -> InputShape:
        """The input's final shape: from the pinned descriptor when ours, else the PSBT."""
        if view.wallet is not None:
            derived = view.wallet.derived
            threshold = view.wallet.descriptor.threshold or 1
            return InputShape(derived.redeem_script, derived.witness_script, threshold, True)
        info = self.spends.get(view.index)
        if info is None:
            return P2WPKH_SHAPE  # unknown: counted as P2WPKH
        legacy_p2pkh = info.kind is SpendKind.P2PKH
        return InputShape(
            info.redeem_script, info.witness_script, info.threshold, info.segwit, legacy_p2pkh
        )


def refreshed(
    review_: Review,
    tx: Transaction,
    policy: Policy,
    *,
    now: int,
    seen_request_ids: SeenIds,
    signed_outpoints: Spenders,
    spent_today_before: int,
) -> Review:
    """``review_`` judged again at ``now`` against the history as it stands now: the
    moment of signing decides expiry, replays, conflicting spends and the day's total.

    Everything else a review decides (what the PSBT says, which outputs are change, the
    signatures already present) cannot change between the review and the signature: the
    PSBT is the same object, and the pins and the policy change only in ceremonies of
    their own. So only the facts that depend on time and history are evaluated again, in
    time linear in the inputs (a second full review of a 1,450-input PSBT costs more than
    a third of its HSM signatures).
    """
    if review_.facts is None or review_.request is None or not review_.approved_for_signing:
        return review_
    refusals: list[Refusal] = []
    meta = review_.request
    if meta.request_id in seen_request_ids:
        refusals.append(
            Refusal(
                "replayed",
                f"request {meta.request_id.hex()} was already presented to this appliance",
            )
        )
    replaces = set(meta.replaces)
    txid = tx.txid  # once, not per input: a replacement has every input already signed
    for index, txin in enumerate(tx.inputs):
        spender = signed_outpoints.get(txin.prevout)
        if spender is not None and spender != txid and spender not in replaces:
            refusals.append(
                Refusal(
                    "conflicting_spend",
                    f"input {index} spends {txin.prevout}, "
                    f"already signed in transaction {spender[::-1].hex()}",
                )
            )
    facts = replace(review_.facts, request_time=now, spent_today_before=spent_today_before)
    decision = evaluate(policy, facts)
    refusals += [Refusal(_violation_code(v), v) for v in decision.violations]
    refusals.sort(key=lambda r: _RANK[r.code])
    return replace(review_, facts=facts, decision=decision, refusals=tuple(refusals))


def _violation_code(violation: str) -> str:
    """The refusal code for one policy violation (named by the evaluator's check)."""
    name = violation.split(":", 1)[0]
    table = {
        "network": "network",
        "expiry": "expired",
        "ttl": "expired",
        "created": "future_request",
        "tx_version": "tx_version",
        "locktime": "timelock",
        "relative_locks": "timelock",
        "per_tx_limit": "limits",
        "per_day_limit": "limits",
        "max_fee": "fee",
        "fee_rate": "fee_rate",
    }
    if name in table:
        return table[name]
    if name.endswith("script type"):
        return "script_type"
    if name.endswith("address book"):
        return "address_book"
    return "policy"


__all__ = [
    "KEY_STATES",
    "REFUSAL_CODES",
    "InputView",
    "OurKey",
    "OutputView",
    "PinnedWallet",
    "Refusal",
    "Review",
    "ReviewError",
    "WalletMatch",
    "inputs_to_sign",
    "refreshed",
    "requester_line",
    "review",
    "review_locks_text",
]
