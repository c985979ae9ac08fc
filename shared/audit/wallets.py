"""Which scripts and keys are the custodian's, derived from the wallet descriptors alone.

The auditor does not take the coordinator's address inventory on trust: every script is
re-derived from the descriptors in the evidence. Ranged descriptors are derived from index
0 up to the highest index any PSBT in the evidence names (in its BIP-32 derivation hints)
plus a gap of :data:`GAP`, on both branches; a hint only says how far to look, never what
is ours. Fixed-key descriptors (``wpkh(<hex>)``, the appliance's HSM keys) have one script.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.audit.evidence import CoordinatorEvidence, WalletEvidence
from shared.bitcoin.descriptor import DerivedOutput, Descriptor, DescriptorError, parse_key
from shared.review import MAX_OUR_INDEX

GAP = 100
#: A hint naming a huge index must not make the replay derive for hours.
MAX_INDEX = MAX_OUR_INDEX  # the station refuses outputs to our wallets beyond it


@dataclass(frozen=True)
class WalletScript:
    """A derived output script: its wallet and the public keys that may sign for it."""

    wallet: str
    keys: frozenset[bytes]


@dataclass
class WalletIndex:
    """Every derived script of every wallet, and which appliance holds which key."""

    scripts: dict[bytes, WalletScript] = field(default_factory=dict)
    appliance_keys: dict[bytes, str] = field(default_factory=dict)
    #: child public key -> the account key a station registered (bip32-seed keys: the
    #: journal registers the account, the chain sees its children)
    accounts: dict[bytes, bytes] = field(default_factory=dict)
    external_keys: set[bytes] = field(default_factory=set)
    highest_index: int = -1
    capped: bool = False
    #: the highest index derived on ranged descriptors (hinted index + GAP, capped)
    top: int = GAP

    def wallet_of(self, script: bytes) -> str | None:
        found = self.scripts.get(script)
        return found.wallet if found else None


def build_index(evidence: CoordinatorEvidence) -> WalletIndex:
    """Derive every wallet's scripts (see the module docstring)."""
    index = WalletIndex(highest_index=evidence.highest_hint)
    top = index.highest_index + GAP
    if top > MAX_INDEX:
        top, index.capped = MAX_INDEX, True
    index.top = top
    for wallet in evidence.wallets:
        _add_wallet(index, wallet, top)
    return index


def _add_wallet(index: WalletIndex, wallet: WalletEvidence, top: int) -> None:
    for member in wallet.members:
        key = member.pubkey
        if key is not None and member.role == "appliance" and member.appliance_id:
            index.appliance_keys[key] = member.appliance_id
        elif key is not None:
            index.external_keys.add(key)
        elif member.role == "appliance" and member.appliance_id:
            _add_account(index, wallet, member.key, member.appliance_id, top)
    for descriptor in wallet.descriptors:
        for derived in _derive_all(descriptor, top):
            keys = frozenset(pk for pk, _ in derived.keys)
            index.scripts.setdefault(derived.script_pubkey, WalletScript(wallet.name, keys))


def _add_account(
    index: WalletIndex, wallet: WalletEvidence, text: str, appliance_id: str, top: int
) -> None:
    """An appliance member holding an account xpub (a bip32-seed key): each child the
    wallet's descriptors derive from it is that appliance's, standing for its account."""
    try:
        member = parse_key(text)
    except DescriptorError:
        return
    if member.xpub is None:
        return
    account = member.xpub.public_key
    index.appliance_keys[account] = appliance_id
    for descriptor in wallet.descriptors:
        for key in descriptor.keys:
            same = key.xpub is not None and (key.xpub.key, key.xpub.chain_code) == (
                member.xpub.key,
                member.xpub.chain_code,
            )  # as the station's Account.holds: depth and parent bytes do not make a key
            if not same:
                continue
            indexes = range(top + 1) if key.wildcard else range(1)
            for branch in range(key.branch_count):
                for i in indexes:
                    try:
                        child = key.derive(i, branch)[0]
                    except ValueError:  # an index with no valid child (BIP-32 skips it)
                        continue
                    index.appliance_keys[child] = appliance_id
                    index.accounts[child] = account


def _derive_all(descriptor: Descriptor, top: int) -> list[DerivedOutput]:
    indexes = range(top + 1) if descriptor.is_ranged else range(1)
    branches = (False, True) if descriptor.branch_count >= 2 else (False,)
    derived = []
    for change in branches:
        for i in indexes:
            try:
                derived.append(descriptor.derive(i, change))
            except DescriptorError:
                continue  # an index with no valid child key (BIP-32 skips it too)
    return derived
