"""Which outputs of an approved transaction are change, re-derived from what the journal pinned.

A transcript's ``is_change`` is the station's claim, and the station decided it from a
wallet file on untrusted storage (issue 12: a descriptor appended to ``wallets.json`` made a
payment to an attacker show as change, exempt from the limits). The replay therefore
recomputes it from two signed sources only, with the station's own rule (DESIGN 9):

* the descriptors the station's journal had pinned at that seq (:class:`PinnedWallets`:
  ``wallet_exported`` and ``wallet_pinned`` records add ``details["descriptor"]``,
  ``wallet_unpinned`` removes it);
* the policy then in force, whose ``internal_wallets`` (policy format 2; absent before,
  read as none) name wallets the administrators declare the custodian's own.

    An output is change only if a pinned descriptor derives its script, and that
    descriptor is the wallet the inputs spend from, one the policy names as internal, or
    an ``hsm-key`` wallet while every input spends ``hsm-key`` wallets, each key one the
    journal registered to the station and active (a key pool's change:
    :func:`shared.review.pool_change`).

Scripts come from the request's PSBT, which the journal record binds through the request
hash (it covers the unsigned transaction and every spent output, amount and script).
Ranged descriptors are derived from index 0 to the replay's derivation depth
(:mod:`shared.audit.wallets`), on both branches, plus any index a PSBT derivation hint
names: a hint says where to look, never what is ours.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from shared.audit.facts import ChangeFacts, change_facts, value
from shared.bitcoin.bip32 import HARDENED
from shared.bitcoin.descriptor import Descriptor, DescriptorError
from shared.psbt import Psbt
from shared.review import pool_change, pool_key

#: At most this many hinted indexes beyond the derived range are tried per script (the
#: station tries as many); a PSBT cannot make the replay derive without bound.
MAX_HINTED = 8


def canonical_descriptor(text: object) -> str | None:
    """The descriptor's canonical text (with checksum), or None when it does not parse:
    pins and policy entries are compared in this form, as the station compares them."""
    if not isinstance(text, str):
        return None
    try:
        return str(Descriptor.parse(text, require_checksum=False))
    except DescriptorError:
        return None


class PinnedWallets:
    """The descriptors the journal has pinned so far (canonical text -> seq of the pin)."""

    def __init__(self) -> None:
        self._pins: dict[str, int] = {}
        self._snapshot: tuple[str, ...] | None = ()

    def pin(self, text: object, seq: int) -> str | None:
        """Add a pin; the problem when the record's descriptor cannot be read."""
        canonical = canonical_descriptor(text)
        if canonical is None:
            return "pins a descriptor that does not parse"
        self._pins.setdefault(canonical, seq)
        self._snapshot = None
        return None

    def unpin(self, text: object) -> str | None:
        """Remove a pin; the problem when it was not pinned (nothing changes then)."""
        canonical = canonical_descriptor(text)
        if canonical is None or canonical not in self._pins:
            return "unpins a descriptor that is not pinned"
        del self._pins[canonical]
        self._snapshot = None
        return None

    def snapshot(self) -> tuple[str, ...]:
        """The pinned descriptors now, in pin order; shared until the next (un)pin."""
        if self._snapshot is None:
            self._snapshot = tuple(self._pins)
        return self._snapshot


@dataclass(frozen=True)
class OutputChange:
    """One output, re-judged: ``wallet`` is the pinned descriptor deriving it, if any."""

    index: int
    amount: int
    script: bytes
    wallet: str | None
    is_change: bool


@dataclass(frozen=True)
class Rederived:
    """The re-derivation of one transaction; ``foreign_inputs`` are inputs no pinned
    descriptor derives (the station must refuse those)."""

    outputs: tuple[OutputChange, ...]
    input_wallets: frozenset[str]
    foreign_inputs: tuple[int, ...]

    @property
    def paid_out(self) -> int:
        """Satoshis paid to others: what counts toward the per-transaction and daily limits."""
        return sum(o.amount for o in self.outputs if not o.is_change)


@dataclass
class _Scripts:
    """One descriptor's scripts from index 0 to ``top`` (derived once), plus hinted ones."""

    descriptor: Descriptor
    top: int
    known: set[bytes] = field(default_factory=set)

    def __post_init__(self) -> None:
        indexes = range(self.top + 1) if self.descriptor.is_ranged else range(1)
        for index in indexes:
            self._add(index)

    def _add(self, index: int) -> None:
        for change in (False, True) if self.descriptor.branch_count >= 2 else (False,):
            try:
                self.known.add(self.descriptor.derive(index, change).script_pubkey)
            except DescriptorError:
                continue  # an index with no valid child key (BIP-32 skips it too)

    def derives(self, script: bytes, hints: Iterable[int]) -> bool:
        if script in self.known:
            return True
        if not self.descriptor.is_ranged:
            return False
        for index in sorted({i for i in hints if self.top < i < HARDENED})[:MAX_HINTED]:
            self._add(index)
        return script in self.known


class ChangeDeriver:
    """Re-derives change for many transactions, deriving each descriptor's scripts once."""

    def __init__(self, top_index: int) -> None:
        self.top_index = max(top_index, 0)
        self._cache: dict[str, _Scripts | None] = {}
        self._internal: dict[tuple[str, ...], set[str]] = {}

    def _scripts(self, text: str) -> _Scripts | None:
        if text not in self._cache:
            try:
                descriptor = Descriptor.parse(text, require_checksum=False)
            except DescriptorError:
                self._cache[text] = None
            else:
                self._cache[text] = _Scripts(descriptor, self.top_index)
        return self._cache[text]

    def wallet_of(self, script: bytes, pinned: Sequence[str], hints: Iterable[int]) -> list[str]:
        """Every pinned descriptor that derives ``script``."""
        hinted = list(hints)
        return [
            text
            for text in pinned
            if (found := self._scripts(text)) is not None and found.derives(script, hinted)
        ]

    def _pool_change(self, wallet: str, input_wallets: set[str], own: frozenset[bytes]) -> bool:
        """The station's key-pool rule (:func:`shared.review.pool_change`) on pinned texts,
        and every key one the journal registered to this station (``own``): a pin is a
        journal record, and a station running other code could pin a stranger's key."""
        texts = [wallet, *input_wallets]
        scripts = [self._scripts(text) for text in texts]
        descriptors = [s.descriptor for s in scripts if s is not None]
        if len(descriptors) != len(texts) or not pool_change(descriptors[0], descriptors[1:]):
            return False
        return all(pool_key(d) in own for d in descriptors)

    def rederive(
        self,
        psbt: Psbt,
        pinned: Sequence[str],
        internal: Iterable[str],
        own: frozenset[bytes] = frozenset(),
    ) -> Rederived:
        """Apply the rule of the module docstring to ``psbt``'s transaction; ``own`` are the
        station's active keys the journal registered (a key pool's keys must be among them)."""
        return self.rederive_facts(change_facts(psbt), pinned, internal, own)

    def rederive_facts(
        self,
        facts: ChangeFacts,
        pinned: Sequence[str],
        internal: Iterable[str],
        own: frozenset[bytes] = frozenset(),
    ) -> Rederived:
        """:meth:`rederive` from what the request's PSBT says (read where it was parsed)."""
        internal = tuple(internal)
        internal_set = self._internal.get(internal)
        if internal_set is None:
            internal_set = {c for c in (canonical_descriptor(t) for t in internal) if c}
            self._internal[internal] = internal_set
        input_wallets: set[str] = set()
        foreign = []
        for i, (script, hints) in enumerate(facts.inputs):
            found = [] if script is None else self.wallet_of(script, pinned, hints)
            if not found:
                foreign.append(i)
            input_wallets.update(found)
        outputs = []
        for j, (amount, script, hints) in enumerate(value(facts.outputs)):
            found = self.wallet_of(script, pinned, hints)
            change = [
                w
                for w in found
                if w in input_wallets
                or w in internal_set
                or self._pool_change(w, input_wallets, own)
            ]
            wallet = change[0] if change else (found[0] if found else None)
            outputs.append(OutputChange(j, amount, script, wallet, bool(change)))
        return Rederived(tuple(outputs), frozenset(input_wallets), tuple(foreign))


__all__ = ["ChangeDeriver", "OutputChange", "PinnedWallets", "Rederived", "canonical_descriptor"]
