"""Policy document, administrator signatures, approvals and the deterministic evaluator.

One module runs on the appliance and in the auditor's replay (DESIGN 1), so the same
policy and the same facts give the same :class:`Decision`, byte for byte. Nothing here
reads a clock or a device: the request time and the day's spending come in as facts.

Units, all integers (no floats anywhere near money):
  * amounts, limits and fees in satoshis;
  * ``fee_rate_ceiling`` in sat/kvB (numerically the same as millisat/vB), so "fee rate
    over ceiling" is ``fee * 1000 > fee_rate_ceiling * vsize``;
  * times in UTC unix seconds; a UTC day is ``time // 86400``.

Format 2 adds ``internal_wallets`` (descriptors the administrators declare the custodian's
own: outputs to them count as change even when the inputs come from another wallet, and
the station may pin them although its key alone is not needed to spend them) and
``allow_timelocks`` (default false: a transaction may carry no relative lock and no
absolute lock beyond the tip height the request declares).

Digests (each a canonical-CBOR SHA-256 of a map with its own ``type``, so a signature made
for one purpose can never be replayed as another):
  * ``Policy.hash()``: the policy document ``{"type": "coldstation-policy", ...}``;
  * ``policy_signing_digest``: ``{"type": "coldstation-policy-signature", "policy": hash}``,
    what administrators sign;
  * ``approval_digest``: ``{"type": "coldstation-approval", "request": ..., "policy": ...}``,
    what approvers sign, binding the approval to one request under one policy.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shared import approval_keys, canonical
from shared.bitcoin.address import AddressError, address_to_script, network_by_name
from shared.bitcoin.address import script_to_address as _script_to_address
from shared.bitcoin.amount import MAX_MONEY
from shared.bitcoin.script import OutputType, classify
from shared.bitcoin.tx import LOCKTIME_THRESHOLD
from shared.checks import FieldChecks
from shared.journal import is_fingerprint
from shared.requester import Requester, RequesterError, check_requesters, requesters_from_plain

POLICY_TYPE = "coldstation-policy"
SIGNED_POLICY_TYPE = "coldstation-signed-policy"
POLICY_FORMAT = 2
MAX_CLOCK_SKEW = 600  # seconds a request may be dated ahead of the station
STANDARD_TX_VERSIONS = (1, 2)
MAX_INTERNAL_WALLETS = 100
NETWORKS = ("mainnet", "testnet", "signet", "regtest")
ROLES = ("approver", "administrator")

MAX_FEE_RATE = 100_000_000  # sat/kvB (100k sat/vB): anything above is a typo
MAX_TTL = 366 * 86400
MAX_TIME = 2**40
MAX_VSIZE = 4_000_000
MAX_SCRIPT = 10_000
MAX_OFFICERS = 100
MAX_BOOK = 10_000
MAX_LABEL = 100
MAX_APPLIANCE_ID = 64
MAX_POLICY_BYTES = 4 * 1024 * 1024
MAX_PAYMENTS = 10_000
DAY = 86400

_OFFICER_KEYS = frozenset({"fingerprint", "pubkey", "role", "active"})
#: ``algorithm`` is written only for P-256 keys: a secp256k1 officer's entry stays as
#: format-2 policies wrote it, so every policy signed before P-256 keeps its hash
_OFFICER_OPTIONAL = frozenset({"algorithm"})
_POLICY_KEYS = frozenset(
    {
        "type",
        "format",
        "version",
        "network",
        "appliance",
        "officers",
        "approval_quorum",
        "administrators",
        "admin_quorum",
        "address_book",
        "require_address_book",
        "per_tx_limit",
        "per_day_limit",
        "fee_rate_ceiling",
        "max_fee",
        "allowed_script_types",
        "request_ttl_max",
        "previous_hash",
        "internal_wallets",
        "allow_timelocks",
    }
)
#: ``requesters`` is written only when the policy lists some: every policy signed before
#: requesters were verified keeps its hash
_POLICY_OPTIONAL = frozenset({"requesters"})


class PolicyError(ValueError):
    """A policy document, signature set or fact that is malformed or not acceptable."""


_check = FieldChecks(PolicyError)


def fingerprint_of(pubkey: bytes) -> str:
    """Officer key fingerprint: hex of the first 8 bytes of SHA-256(compressed pubkey)."""
    return hashlib.sha256(pubkey).digest()[:8].hex()


def utc_day(time: int) -> int:
    """The UTC day number of a unix time; per-day limits group by it."""
    return time // DAY


# -- officers -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Officer:
    """An enrolled key: approvers approve requests, administrators sign policies.

    ``algorithm`` is the approval key's curve (``shared.approval_keys``): officer tokens
    that do only P-256 (YubiKey PIV, TPMs, most smartcards) enrol with ``"p256"``.
    Revoked officers stay listed with ``active=False`` so older records still replay.
    """

    fingerprint: str
    pubkey: bytes
    role: str
    active: bool = True
    algorithm: str = approval_keys.SECP256K1

    def __post_init__(self) -> None:
        try:
            approval_keys.check_algorithm(self.algorithm)
        except approval_keys.ApprovalKeyError as exc:
            raise PolicyError(f"officer {self.fingerprint!r}: {exc}") from None
        if not isinstance(self.pubkey, bytes) or len(self.pubkey) != 33:
            raise PolicyError("officer public key must be 33 bytes (compressed)")
        if not approval_keys.is_valid_public_key(self.algorithm, self.pubkey):
            raise PolicyError(
                f"officer {self.fingerprint!r}: public key is not on the {self.algorithm} curve"
            )
        if not is_fingerprint(self.fingerprint):
            raise PolicyError(f"officer fingerprint {self.fingerprint!r} is not 16 hex digits")
        if self.fingerprint != fingerprint_of(self.pubkey):
            raise PolicyError(f"officer fingerprint {self.fingerprint} does not match its key")
        if self.role not in ROLES:
            raise PolicyError(f"officer {self.fingerprint}: unknown role {self.role!r}")
        _check.boolean(self.active, f"officer {self.fingerprint} active")

    @classmethod
    def from_pubkey(
        cls,
        pubkey: bytes,
        role: str,
        active: bool = True,
        algorithm: str = approval_keys.SECP256K1,
    ) -> Officer:
        return cls(fingerprint_of(pubkey), pubkey, role, active, algorithm)

    def verify(self, signature: object, digest: bytes) -> bool:
        """True when ``signature`` is this officer's (one valid encoding, low S)."""
        return approval_keys.verify(self.algorithm, self.pubkey, signature, digest)

    def to_plain(self) -> dict[str, Any]:
        plain: dict[str, Any] = {
            "fingerprint": self.fingerprint,
            "pubkey": self.pubkey,
            "role": self.role,
            "active": self.active,
        }
        if self.algorithm != approval_keys.SECP256K1:
            plain["algorithm"] = self.algorithm
        return plain

    @classmethod
    def from_plain(cls, plain: object) -> Officer:
        data = _check.exact_keys(plain, "officer", _OFFICER_KEYS, _OFFICER_OPTIONAL)
        algorithm = data.get("algorithm", approval_keys.SECP256K1)
        if "algorithm" in data and algorithm == approval_keys.SECP256K1:
            # one encoding per policy: the default is never spelled out
            raise PolicyError("officer entry names algorithm 'secp256k1': omit it (the default)")
        return cls(data["fingerprint"], data["pubkey"], data["role"], data["active"], algorithm)


def _requesters_from_plain(value: object) -> tuple[Requester, ...]:
    if value == []:  # one encoding per policy: no requesters is no field
        raise PolicyError("requesters is an empty list: omit the field")
    try:
        return requesters_from_plain(value)
    except RequesterError as exc:
        raise PolicyError(str(exc)) from None


def _check_officers(officers: object, role: str, name: str) -> tuple[Officer, ...]:
    items = tuple(_check.items(officers, name, MAX_OFFICERS))
    for officer in items:
        if not isinstance(officer, Officer):
            raise PolicyError(f"{name} must hold Officer entries")
        if officer.role != role:
            raise PolicyError(f"{name}: officer {officer.fingerprint} has role {officer.role}")
    return items


def _check_quorum(quorum: object, officers: tuple[Officer, ...], name: str) -> None:
    """A quorum must be reachable by the officers still active, and at least 1."""
    active = sum(1 for o in officers if o.active)
    if active == 0:
        raise PolicyError(f"{name}: no active officers")
    _check.integer(quorum, name, 1, active)


# -- policy -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    """The signed rules an appliance enforces; see the module docstring for units."""

    version: int
    network: str
    appliance_id: str
    officers: tuple[Officer, ...]
    approval_quorum: int
    administrators: tuple[Officer, ...]
    admin_quorum: int
    address_book: tuple[tuple[str, str], ...]
    require_address_book: bool
    per_tx_limit: int
    per_day_limit: int
    fee_rate_ceiling: int
    max_fee: int
    allowed_script_types: tuple[OutputType, ...]
    request_ttl_max: int
    previous_hash: bytes | None = None
    internal_wallets: tuple[str, ...] = ()
    allow_timelocks: bool = False
    requesters: tuple[Requester, ...] = ()
    _book: dict[bytes, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check.integer(self.version, "version", 1, 2**63 - 1)
        if (self.version == 1) != (self.previous_hash is None):
            raise PolicyError("version 1, and only version 1, has no previous_hash")
        if self.previous_hash is not None:
            _check.fixed_bytes(self.previous_hash, "previous_hash", 32)
        _check.choice(self.network, "network", NETWORKS)
        _check.text(self.appliance_id, "appliance id", MAX_APPLIANCE_ID)
        self._set("officers", _check_officers(self.officers, "approver", "officers"))
        self._set(
            "administrators",
            _check_officers(self.administrators, "administrator", "administrators"),
        )
        _check_unique_keys(self.officers + self.administrators)
        _check_quorum(self.approval_quorum, self.officers, "approval_quorum")
        _check_quorum(self.admin_quorum, self.administrators, "admin_quorum")
        _check.boolean(self.require_address_book, "require_address_book")
        self._check_limits()
        self._set("allowed_script_types", _check_script_types(self.allowed_script_types))
        self._set("address_book", _normalise_book(self.address_book))
        self._set("_book", _check_book(self.address_book, self.network))
        self._set("internal_wallets", _check_internal_wallets(self.internal_wallets))
        _check.boolean(self.allow_timelocks, "allow_timelocks")
        try:
            self._set("requesters", check_requesters(self.requesters))
        except RequesterError as exc:
            raise PolicyError(str(exc)) from None
        known = {o.fingerprint for o in self.officers}
        for requester in self.requesters:
            if requester.officer is not None and requester.officer not in known:
                raise PolicyError(
                    f"requester {requester.name!r}: officer {requester.officer} is not an "
                    "approver of this policy"
                )

    def requester(self, name: str) -> Requester | None:
        """The listed requester of this name: the active one, else the last revoked."""
        named = [r for r in self.requesters if r.name == name]
        return next((r for r in named if r.active), named[-1] if named else None)

    def _set(self, name: str, value: object) -> None:
        object.__setattr__(self, name, value)

    def _check_limits(self) -> None:
        _check.integer(self.per_tx_limit, "per_tx_limit", 0, MAX_MONEY)
        _check.integer(self.per_day_limit, "per_day_limit", 0, MAX_MONEY)
        _check.integer(self.fee_rate_ceiling, "fee_rate_ceiling (sat/kvB)", 0, MAX_FEE_RATE)
        _check.integer(self.max_fee, "max_fee", 0, MAX_MONEY)
        _check.integer(self.request_ttl_max, "request_ttl_max", 1, MAX_TTL)

    def officer(self, fingerprint: str) -> Officer | None:
        """The approver or administrator with this fingerprint, revoked or not."""
        for o in self.officers + self.administrators:
            if o.fingerprint == fingerprint:
                return o
        return None

    def label_for(self, script_pubkey: bytes) -> str | None:
        return self._book.get(script_pubkey)

    def in_address_book(self, script_pubkey: bytes) -> bool:
        return script_pubkey in self._book

    def to_plain(self) -> dict[str, Any]:
        plain: dict[str, Any] = {
            "type": POLICY_TYPE,
            "format": POLICY_FORMAT,
            "version": self.version,
            "network": self.network,
            "appliance": self.appliance_id,
            "officers": [o.to_plain() for o in self.officers],
            "approval_quorum": self.approval_quorum,
            "administrators": [o.to_plain() for o in self.administrators],
            "admin_quorum": self.admin_quorum,
            "address_book": [[a, label] for a, label in self.address_book],
            "require_address_book": self.require_address_book,
            "per_tx_limit": self.per_tx_limit,
            "per_day_limit": self.per_day_limit,
            "fee_rate_ceiling": self.fee_rate_ceiling,
            "max_fee": self.max_fee,
            "allowed_script_types": [t.value for t in self.allowed_script_types],
            "request_ttl_max": self.request_ttl_max,
            "previous_hash": self.previous_hash,
            "internal_wallets": list(self.internal_wallets),
            "allow_timelocks": self.allow_timelocks,
        }
        if self.requesters:
            plain["requesters"] = [r.to_plain() for r in self.requesters]
        return plain

    @classmethod
    def from_plain(cls, plain: object) -> Policy:
        data = _check.exact_keys(plain, "policy", _POLICY_KEYS, _POLICY_OPTIONAL)
        if data["type"] != POLICY_TYPE:
            raise PolicyError(f"document type {data['type']!r} is not {POLICY_TYPE!r}")
        if data["format"] != POLICY_FORMAT or isinstance(data["format"], bool):
            raise PolicyError(f"unsupported policy format {data['format']!r}")
        return cls(
            version=data["version"],
            network=data["network"],
            appliance_id=data["appliance"],
            officers=_officers_from_plain(data["officers"], "officers"),
            approval_quorum=data["approval_quorum"],
            administrators=_officers_from_plain(data["administrators"], "administrators"),
            admin_quorum=data["admin_quorum"],
            address_book=_normalise_book(data["address_book"]),
            require_address_book=data["require_address_book"],
            per_tx_limit=data["per_tx_limit"],
            per_day_limit=data["per_day_limit"],
            fee_rate_ceiling=data["fee_rate_ceiling"],
            max_fee=data["max_fee"],
            allowed_script_types=tuple(
                _check.items(data["allowed_script_types"], "script types", 16)
            ),
            request_ttl_max=data["request_ttl_max"],
            previous_hash=data["previous_hash"],
            internal_wallets=tuple(
                _check.items(data["internal_wallets"], "internal_wallets", MAX_INTERNAL_WALLETS)
            ),
            allow_timelocks=data["allow_timelocks"],
            requesters=_requesters_from_plain(data["requesters"]) if "requesters" in data else (),
        )

    def to_bytes(self) -> bytes:
        return canonical.encode(self.to_plain())

    @classmethod
    def from_bytes(cls, data: bytes) -> Policy:
        return cls.from_plain(_decode(data, "policy"))

    def hash(self) -> bytes:
        """Identity of this policy: journaled, chained by successors, bound into approvals.

        Computed once: every approval check needs it, and the policy is immutable.
        """
        cached = self.__dict__.get("_hash")
        if cached is None:
            cached = canonical.digest(self.to_plain())
            object.__setattr__(self, "_hash", cached)
        return cached


def _decode(data: object, what: str) -> Any:
    if not isinstance(data, bytes):
        raise PolicyError(f"{what} must be bytes")
    try:
        return canonical.decode(data, max_size=MAX_POLICY_BYTES)
    except canonical.CanonicalError as exc:
        raise PolicyError(f"{what}: {exc}") from exc


def _officers_from_plain(value: object, name: str) -> tuple[Officer, ...]:
    return tuple(Officer.from_plain(o) for o in _check.items(value, name, MAX_OFFICERS))


def _normalise_book(value: object) -> tuple[tuple[str, str], ...]:
    """Pairs as tuples (lists from CBOR, tuples from code) so equal books compare equal."""
    entries = _check.items(value, "address_book", MAX_BOOK)
    for entry in entries:
        if not isinstance(entry, list | tuple) or len(entry) != 2:
            raise PolicyError("address book entries must be [address, label] pairs")
    return tuple((e[0], e[1]) for e in entries)


def _check_unique_keys(officers: tuple[Officer, ...]) -> None:
    """One key, one role: an administrator key listed as an approver would blur duties."""
    seen: set[str] = set()
    for o in officers:
        if o.fingerprint in seen:
            raise PolicyError(f"fingerprint {o.fingerprint} is listed twice")
        seen.add(o.fingerprint)


def _check_internal_wallets(value: object) -> tuple[str, ...]:
    """Descriptor texts, each once, in the canonical form the descriptor parser writes
    (with its checksum), so the station compares pins and policy entries as plain text."""
    from shared.bitcoin.descriptor import Descriptor, DescriptorError

    items = tuple(_check.items(value, "internal_wallets", MAX_INTERNAL_WALLETS))
    canonical_texts = []
    for item in items:
        text = _check.text(item, "internal wallet descriptor", 4096)
        try:
            parsed = str(Descriptor.parse(text, require_checksum=False))
        except DescriptorError as exc:
            raise PolicyError(f"internal wallet {text[:40]}…: {exc}") from exc
        if parsed != text:
            raise PolicyError(
                f"internal wallet {text[:40]}… is not in canonical form (write {parsed})"
            )
        canonical_texts.append(text)
    if len(set(canonical_texts)) != len(canonical_texts):
        raise PolicyError("internal_wallets lists a descriptor twice")
    return tuple(canonical_texts)


def _check_script_types(value: object) -> tuple[OutputType, ...]:
    items = _check.items(value, "allowed_script_types", len(OutputType))
    types = []
    for item in items:
        try:
            types.append(OutputType(item.value if isinstance(item, OutputType) else item))
        except ValueError:
            raise PolicyError(f"unknown output script type {item!r}") from None
    if len(set(types)) != len(types):
        raise PolicyError("allowed_script_types lists a type twice")
    return tuple(types)


def _check_book(book: tuple[tuple[str, str], ...], network: str) -> dict[bytes, str]:
    """Each address must be valid for the policy's network and written in its one canonical
    spelling (so the signed document has a single form); labels must be unique per script."""
    net = network_by_name(network)
    scripts: dict[bytes, str] = {}
    for raw_address, raw_label in book:
        address = _check.text(raw_address, "address", 100)
        label = _check.text(raw_label, f"label of {address}", MAX_LABEL)
        try:
            script = address_to_script(address, net)
        except AddressError as exc:
            raise PolicyError(f"address book: {address}: {exc}") from exc
        if _script_to_address(script, net) != address:
            raise PolicyError(f"address book: {address} is not in canonical form")
        if script in scripts:
            raise PolicyError(f"address book lists {address} twice")
        scripts[script] = label
    return scripts


def label_for(policy: Policy, script_pubkey: bytes) -> str | None:
    """The address-book label for an output script, as the appliance shows it."""
    return policy.label_for(script_pubkey)


# -- policy signatures --------------------------------------------------------------------


def policy_signing_digest(policy: Policy) -> bytes:
    """What administrators sign: the policy hash under its own domain tag."""
    return canonical.digest({"type": "coldstation-policy-signature", "policy": policy.hash()})


@dataclass(frozen=True)
class SignatureTally:
    """Signatures that counted, and each one that did not with the reason."""

    valid: tuple[str, ...]
    rejected: tuple[tuple[str, str], ...]
    quorum: int

    @property
    def met(self) -> bool:
        return len(self.valid) >= self.quorum

    def to_plain(self) -> dict[str, Any]:
        return {
            "valid": list(self.valid),
            "rejected": [list(r) for r in self.rejected],
            "quorum": self.quorum,
        }


#: Approval tallies have the same shape as policy-signature tallies.
ApprovalTally = SignatureTally


@dataclass(frozen=True)
class SignedPolicy:
    """A policy with administrators' signatures, keyed by administrator fingerprint."""

    policy: Policy
    signatures: dict[str, bytes]

    def __post_init__(self) -> None:
        if not isinstance(self.policy, Policy):
            raise PolicyError("signed policy must hold a Policy")
        if not isinstance(self.signatures, Mapping) or len(self.signatures) > MAX_OFFICERS:
            raise PolicyError(f"signatures must be a map of at most {MAX_OFFICERS} entries")
        for fp, sig in self.signatures.items():
            if not isinstance(fp, str) or not isinstance(sig, bytes) or len(sig) > 80:
                raise PolicyError("signatures must map fingerprint text to DER bytes")
        object.__setattr__(self, "signatures", dict(self.signatures))

    def to_plain(self) -> dict[str, Any]:
        return {
            "type": SIGNED_POLICY_TYPE,
            "policy": self.policy.to_plain(),
            "signatures": dict(self.signatures),
        }

    @classmethod
    def from_plain(cls, plain: object) -> SignedPolicy:
        data = _check.exact_keys(
            plain, "signed policy", frozenset({"type", "policy", "signatures"})
        )
        if data["type"] != SIGNED_POLICY_TYPE:
            raise PolicyError(f"document type {data['type']!r} is not {SIGNED_POLICY_TYPE!r}")
        return cls(Policy.from_plain(data["policy"]), data["signatures"])

    def to_bytes(self) -> bytes:
        """The ``ur:bytes`` body a policy ceremony transfers."""
        return canonical.encode(self.to_plain())

    @classmethod
    def from_bytes(cls, data: bytes) -> SignedPolicy:
        return cls.from_plain(_decode(data, "signed policy"))


def _tally(
    signers: Iterable[Officer],
    signatures: Mapping[Any, object],
    digest: bytes,
    quorum: int,
    requester: str | None = None,
) -> SignatureTally:
    """Count each listed, active signer once; say why every other signature did not count."""
    by_fp = {o.fingerprint: o for o in signers}
    valid: list[str] = []
    rejected: list[tuple[str, str]] = []
    for fp, sig in signatures.items():
        reason = _reject_reason(by_fp, fp, sig, digest, requester)
        if reason is None:
            valid.append(str(fp))
        else:
            rejected.append((fp if isinstance(fp, str) else repr(fp), reason))
    return SignatureTally(tuple(sorted(valid)), tuple(sorted(rejected)), quorum)


def _reject_reason(
    by_fp: Mapping[str, Officer],
    fp: object,
    sig: object,
    digest: bytes,
    requester: str | None,
) -> str | None:
    officer = by_fp.get(fp) if isinstance(fp, str) else None
    if officer is None:
        return "unknown officer"
    if not officer.active:
        return "revoked"
    if requester is not None and fp == requester:
        return "requester approving own request"
    if not isinstance(sig, bytes) or not officer.verify(sig, digest):
        return "bad signature"
    return None


def verify_signed_policy(
    signed: SignedPolicy,
    trusted: Policy | None,
    genesis_admins: list[Officer] | None = None,
) -> SignatureTally:
    """Accept ``signed`` as the next policy after ``trusted``, or raise PolicyError.

    The signers are the TRUSTED policy's active administrators (a successor that lists new
    administrators cannot sign itself in). The first policy (``trusted`` None) is signed by
    its own administrators; ``genesis_admins``, when given, are the administrator keys
    enrolled in person at initialisation, and the first policy must list exactly those.
    """
    policy = signed.policy
    if trusted is None:
        _check_first(policy, genesis_admins)
        signers, quorum = policy.administrators, policy.admin_quorum
    else:
        _check_successor(policy, trusted)
        signers, quorum = trusted.administrators, trusted.admin_quorum
    tally = _tally(signers, signed.signatures, policy_signing_digest(policy), quorum)
    tally = _rename_unknown(tally, "not an administrator of the installed policy")
    if not tally.met:
        refused = "; ".join(f"{fp}: {why}" for fp, why in tally.rejected) or "none"
        raise PolicyError(
            f"policy version {policy.version} has {len(tally.valid)} valid administrator "
            f"signature(s), needs {quorum} (not counted: {refused})"
        )
    return tally


def _rename_unknown(tally: SignatureTally, reason: str) -> SignatureTally:
    """Say precisely why a signer outside the trusted set did not count."""
    rejected = tuple(
        (fp, reason if why == "unknown officer" else why) for fp, why in tally.rejected
    )
    return SignatureTally(tally.valid, rejected, tally.quorum)


def _check_first(policy: Policy, genesis_admins: list[Officer] | None) -> None:
    if policy.previous_hash is not None or policy.version != 1:
        raise PolicyError(
            "no policy is installed: the first policy must be version 1 with no previous_hash"
        )
    if genesis_admins is None:
        return
    pinned = {(o.fingerprint, o.pubkey, o.algorithm) for o in genesis_admins}
    listed = {(o.fingerprint, o.pubkey, o.algorithm) for o in policy.administrators}
    if pinned != listed:
        raise PolicyError(
            "first policy's administrators differ from those enrolled at initialisation"
        )


def _check_successor(policy: Policy, trusted: Policy) -> None:
    if policy.version != trusted.version + 1:
        raise PolicyError(
            f"policy version {policy.version} does not follow installed version {trusted.version}"
        )
    if policy.previous_hash != trusted.hash():
        raise PolicyError(
            f"policy version {policy.version}: previous_hash is not the installed policy's hash"
        )
    if policy.appliance_id != trusted.appliance_id:
        raise PolicyError(
            f"policy is for appliance {policy.appliance_id!r}, not {trusted.appliance_id!r}"
        )
    if policy.network != trusted.network:
        raise PolicyError(f"policy changes network from {trusted.network} to {policy.network}")


# -- administrators' statements ----------------------------------------------------------

WALLET_PIN_STATEMENT = "coldstation-wallet-pin"
RECOVERY_STATEMENT = "coldstation-journal-recovery"


def wallet_pin_statement(appliance_id: str, action: str, descriptor: str) -> dict[str, Any]:
    """What administrators sign to pin (``action`` "pin") or unpin a wallet on a station;
    the station checks the quorum before it journals the signatures, the auditor again."""
    if action not in ("pin", "unpin"):
        raise PolicyError(f"unknown wallet action {action!r}")
    return {
        "type": WALLET_PIN_STATEMENT,
        "appliance": appliance_id,
        "action": action,
        "descriptor": descriptor,
    }


def recovery_statement(
    appliance_id: str,
    kept_through: int,
    head: bytes,
    cut_from: int,
    lost_through: int | None,
    problems: list[str],
) -> dict[str, Any]:
    """What administrators sign before a journal recovery cuts anything: which records
    are kept (through seq ``kept_through``, whose hash is ``head``), where the damaged tail
    starts, the highest seq any anchor or checkpoint vouched for, and why."""
    return {
        "type": RECOVERY_STATEMENT,
        "appliance": appliance_id,
        "kept_through": kept_through,
        "head": head,
        "cut_from": cut_from,
        "lost_through": lost_through,
        "problems": list(problems),
    }


# -- approvals ----------------------------------------------------------------------------


def approval_digest(request_hash: bytes, policy_hash: bytes) -> bytes:
    """What an approver signs: this request under this policy, and nothing else."""
    _check.fixed_bytes(request_hash, "request hash", 32)
    _check.fixed_bytes(policy_hash, "policy hash", 32)
    return canonical.digest(
        {"type": "coldstation-approval", "request": request_hash, "policy": policy_hash}
    )


def count_admin_signatures(
    policy: Policy, digest: bytes, signatures: Mapping[str, bytes]
) -> SignatureTally:
    """Tally administrator signatures over ``digest`` (administrative acts other than policy
    installation, e.g. resetting an officer's PIN lockout), each admin counted once."""
    if not isinstance(signatures, Mapping) or len(signatures) > MAX_OFFICERS:
        raise PolicyError(f"signatures must be a map of at most {MAX_OFFICERS} entries")
    return _tally(policy.administrators, signatures, digest, policy.admin_quorum)


def count_valid_approvals(
    policy: Policy,
    request_hash: bytes,
    approvals: Mapping[str, bytes],
    requester: str | None,
) -> ApprovalTally:
    """Tally approvals over ``approval_digest(request_hash, policy.hash())``.

    ``requester`` is the fingerprint of the requesting identity's key when that identity is
    also an officer; their own approval never counts (REQUIREMENTS 13, 33). Administrator
    keys cannot approve: they only sign policies.
    """
    if not isinstance(approvals, Mapping) or len(approvals) > MAX_OFFICERS:
        raise PolicyError(f"approvals must be a map of at most {MAX_OFFICERS} entries")
    digest = approval_digest(request_hash, policy.hash())
    tally = _tally(policy.officers, approvals, digest, policy.approval_quorum, requester)
    admins = {o.fingerprint for o in policy.administrators}
    rejected = tuple(
        (fp, "administrator key cannot approve" if fp in admins else why)
        for fp, why in tally.rejected
    )
    return SignatureTally(tally.valid, rejected, tally.quorum)


# -- evaluator ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Payment:
    """One transaction output as the appliance decoded it; change was verified as ours."""

    script_pubkey: bytes
    amount: int
    is_change: bool

    def __post_init__(self) -> None:
        if not isinstance(self.script_pubkey, bytes) or len(self.script_pubkey) > MAX_SCRIPT:
            raise PolicyError(f"output script must be at most {MAX_SCRIPT} bytes")
        _check.integer(self.amount, "output amount", 0, MAX_MONEY)
        _check.boolean(self.is_change, "is_change")


@dataclass(frozen=True)
class Facts:
    """Everything the evaluator judges, decoded and computed by the caller.

    ``request_time`` is the appliance's UTC time at evaluation (the time its journal record
    carries). ``request_created``, when known, is the request's creation time; the TTL
    check measures ``request_expiry - request_created`` and ``request_expiry -
    request_time``, and a request dated more than :data:`MAX_CLOCK_SKEW` ahead of the
    station is refused. ``spent_today_before`` is what the appliance already approved on
    the UTC day of ``request_time``, summed from its own journal (each transaction once).
    ``tx_version``, ``locktime``, ``relative_locks`` (inputs whose nSequence sets a BIP-68
    relative lock) and the request's declared ``tip_height`` bound what is signed in time.
    """

    network: str
    request_time: int
    request_expiry: int
    payments: tuple[Payment, ...]
    fee: int
    vsize: int
    spent_today_before: int
    request_created: int | None = None
    tx_version: int = 2
    locktime: int = 0
    relative_locks: int = 0
    tip_height: int | None = None

    def __post_init__(self) -> None:
        _check.choice(self.network, "network", NETWORKS)
        _check.integer(self.tx_version, "tx_version", 0, 2**32 - 1)
        _check.integer(self.locktime, "locktime", 0, 2**32 - 1)
        _check.integer(self.relative_locks, "relative_locks", 0, MAX_PAYMENTS * 10)
        if self.tip_height is not None:
            _check.integer(self.tip_height, "tip_height", 0, LOCKTIME_THRESHOLD - 1)
        _check.integer(self.request_time, "request_time", 0, MAX_TIME)
        _check.integer(self.request_expiry, "request_expiry", 0, MAX_TIME)
        if self.request_created is not None:
            _check.integer(self.request_created, "request_created", 0, MAX_TIME)
        payments = tuple(_check.items(self.payments, "payments", MAX_PAYMENTS))
        if not all(isinstance(p, Payment) for p in payments):
            raise PolicyError("payments must hold Payment entries")
        object.__setattr__(self, "payments", payments)
        _check.integer(self.fee, "fee", 0, MAX_MONEY)
        _check.integer(self.vsize, "vsize", 1, MAX_VSIZE)
        _check.integer(self.spent_today_before, "spent_today_before", 0, 2**63 - 1)


@dataclass(frozen=True)
class Decision:
    """The evaluator's verdict; ``to_plain`` is what the journal and the replay compare."""

    approved: bool
    violations: tuple[str, ...]
    checks: tuple[tuple[str, str], ...]

    def to_plain(self) -> dict[str, Any]:
        return {
            "approved": self.approved,
            "violations": list(self.violations),
            "checks": [[name, result] for name, result in self.checks],
        }

    def to_bytes(self) -> bytes:
        return canonical.encode(self.to_plain())


@dataclass
class _Eval:
    """Accumulates checks and violations in a fixed order."""

    checks: list[tuple[str, str]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)

    def check(self, name: str, ok: bool, passed: str, failed: str) -> None:
        self.checks.append((name, "ok: " + passed if ok else "violation: " + failed))
        if not ok:
            self.violations.append(f"{name}: {failed}")


def evaluate(policy: Policy, facts: Facts) -> Decision:
    """Judge ``facts`` against ``policy``; pure, integer-only, same order every time."""
    ev = _Eval()
    _eval_network(ev, policy, facts)
    _eval_time(ev, policy, facts)
    _eval_locks(ev, policy, facts)
    _eval_outputs(ev, policy, facts)
    _eval_amounts(ev, policy, facts)
    _eval_fee(ev, policy, facts)
    return Decision(not ev.violations, tuple(ev.violations), tuple(ev.checks))


def _eval_network(ev: _Eval, policy: Policy, facts: Facts) -> None:
    ok = facts.network == policy.network
    ev.check(
        "network",
        ok,
        facts.network,
        f"request is for {facts.network}, policy is for {policy.network}",
    )


def _eval_time(ev: _Eval, policy: Policy, facts: Facts) -> None:
    now, expiry = facts.request_time, facts.request_expiry
    ev.check(
        "expiry", now <= expiry, f"{now} <= {expiry}", f"request expired at {expiry}, now {now}"
    )
    start = facts.request_time if facts.request_created is None else facts.request_created
    ttl = max(expiry - start, expiry - now)
    ev.check(
        "ttl",
        ttl <= policy.request_ttl_max,
        f"{ttl} <= {policy.request_ttl_max} s",
        f"request lifetime {ttl} s exceeds {policy.request_ttl_max} s",
    )
    ahead = start - now
    ev.check(
        "created",
        ahead <= MAX_CLOCK_SKEW,
        f"created {max(ahead, 0)} s ahead of the station, at most {MAX_CLOCK_SKEW} s",
        f"request is dated {ahead} s ahead of the station clock (at most {MAX_CLOCK_SKEW} s)",
    )


def _eval_locks(ev: _Eval, policy: Policy, facts: Facts) -> None:
    """Version and timelocks are part of what is signed: bounded like amounts are."""
    ev.check(
        "tx_version",
        facts.tx_version in STANDARD_TX_VERSIONS,
        str(facts.tx_version),
        f"transaction version {facts.tx_version} is not one of {STANDARD_TX_VERSIONS}",
    )
    if policy.allow_timelocks:
        ev.check("timelocks", True, "allowed by the policy", "")
        return
    lock, tip = facts.locktime, facts.tip_height
    at_tip = lock == 0 or (lock < LOCKTIME_THRESHOLD and tip is not None and lock <= tip)
    shown = "none" if lock == 0 else f"height {lock} <= declared tip {tip}"
    ev.check(
        "locktime",
        at_tip,
        shown,
        f"nLockTime {lock} locks the transaction beyond the tip the request declares "
        f"({tip if tip is not None else 'none'}); the policy allows no timelocks",
    )
    ev.check(
        "relative_locks",
        facts.relative_locks == 0,
        "none",
        f"{facts.relative_locks} input(s) carry a relative lock in nSequence; the policy "
        "allows no timelocks",
    )


def _eval_outputs(ev: _Eval, policy: Policy, facts: Facts) -> None:
    """Destination outputs only: change was already proven to derive from our wallet."""
    allowed = set(policy.allowed_script_types)
    for i, p in enumerate(facts.payments):
        if p.is_change:
            continue
        kind = classify(p.script_pubkey)
        ev.check(
            f"output {i} script type",
            kind in allowed,
            kind.value,
            f"{kind.value} is not an allowed script type",
        )
        if policy.require_address_book:
            ev.check(
                f"output {i} address book",
                policy.in_address_book(p.script_pubkey),
                str(policy.label_for(p.script_pubkey)),
                f"{_describe(policy, p.script_pubkey)} is not in the address book",
            )


def _describe(policy: Policy, script: bytes) -> str:
    address = _script_to_address(script, network_by_name(policy.network))
    return address if address is not None else "script " + script.hex()


def _eval_amounts(ev: _Eval, policy: Policy, facts: Facts) -> None:
    total = sum(p.amount for p in facts.payments if not p.is_change)
    ev.check(
        "per_tx_limit",
        total <= policy.per_tx_limit,
        f"{total} <= {policy.per_tx_limit} sat",
        f"pays {total} sat, limit {policy.per_tx_limit} sat",
    )
    day = facts.spent_today_before + total
    ev.check(
        "per_day_limit",
        day <= policy.per_day_limit,
        f"{day} <= {policy.per_day_limit} sat",
        f"day total would be {day} sat ({facts.spent_today_before} already), "
        f"limit {policy.per_day_limit} sat",
    )


def _eval_fee(ev: _Eval, policy: Policy, facts: Facts) -> None:
    fee, vsize, ceiling = facts.fee, facts.vsize, policy.fee_rate_ceiling
    ev.check(
        "max_fee",
        fee <= policy.max_fee,
        f"{fee} <= {policy.max_fee} sat",
        f"fee {fee} sat exceeds {policy.max_fee} sat",
    )
    ok = fee * 1000 <= ceiling * vsize
    ev.check(
        "fee_rate",
        ok,
        f"{fee} sat / {vsize} vB <= {ceiling} sat/kvB",
        f"fee {fee} sat over {vsize} vB exceeds {ceiling} sat/kvB",
    )
