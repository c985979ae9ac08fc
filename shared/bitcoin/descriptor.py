"""Output descriptors (BIP-380/382/383/389), limited to the wallet forms Coldstation uses.

A descriptor is the wallet's identity: the appliance registers it once, then derives from it
the scripts, addresses and key origins it needs to recognise its own change and inputs.
So the parser accepts exactly ``wpkh(KEY)``, ``wsh(multi|sortedmulti(k,KEY,...))`` and their
``sh(...)`` wrappings, and refuses everything else with a message naming the problem,
rather than guessing. Keys must be derivable publicly: a hex compressed pubkey, or an
xpub/tpub with an optional ``[fingerprint/origin]``, unhardened steps, at most one BIP-389
``<a;b>`` multipath element (receive;change) and an optional trailing ``/*``. Private keys
are refused outright; signing keys live in the HSM, never in a descriptor.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from enum import Enum

from coincurve import PublicKey

from shared.bitcoin.address import AddressError, Network, script_to_address, wif_to_private_key
from shared.bitcoin.bip32 import (
    HARDENED,
    BIP32Error,
    ExtendedKey,
    KeyOrigin,
    derive_child,
    derive_path,
    fingerprint,
    parse_path_element,
)
from shared.bitcoin.script import (
    MAX_MULTISIG_KEYS,
    ScriptError,
    multisig_script,
    p2sh_wrap,
    p2wpkh_script,
    p2wsh_script,
)

INPUT_CHARSET = (
    "0123456789()[],'/*abcdefgh@:$%{}"
    "IJKLMNOPQRSTUVWXYZ&+-.;<=>?!^_|~"
    'ijklmnopqrstuvwxyzABCDEFGH`#"\\ '
)
CHECKSUM_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_GENERATOR = (0xF5DEE51989, 0xA9FDCA3312, 0x1BAB10E32D, 0x3706B1677A, 0x644D626FFD)
_INPUT_INDEX = {c: i for i, c in enumerate(INPUT_CHARSET)}
_HEX = re.compile(r"[0-9a-fA-F]+")
#: Unhardened steps a hint may name below an xpub (``<0;1>/*`` needs two).
_MAX_CHILD_STEPS = 4
_OTHER_FUNCTIONS = frozenset(
    {"pk", "pkh", "combo", "tr", "rawtr", "addr", "raw", "multi_a", "sortedmulti_a"}
)

#: A derivation step after an xpub: an index, or the alternatives of a multipath element.
Step = int | tuple[int, ...]


class DescriptorError(ValueError):
    """A descriptor that does not parse, is not one Coldstation accepts, or cannot derive."""


# -- BIP-380 checksum ---------------------------------------------------------------------


def _polymod(symbols: Iterator[int] | list[int]) -> int:
    chk = 1
    for value in symbols:
        top = chk >> 35
        chk = (chk & 0x7FFFFFFFF) << 5 ^ value
        for i, gen in enumerate(_GENERATOR):
            if (top >> i) & 1:
                chk ^= gen
    return chk


def _expand(text: str) -> list[int]:
    symbols: list[int] = []
    groups: list[int] = []
    for c in text:
        value = _INPUT_INDEX.get(c)
        if value is None:
            raise DescriptorError(f"invalid character {c!r} in descriptor")
        symbols.append(value & 31)
        groups.append(value >> 5)
        if len(groups) == 3:
            symbols.append(groups[0] * 9 + groups[1] * 3 + groups[2])
            groups = []
    if len(groups) == 1:
        symbols.append(groups[0])
    elif len(groups) == 2:
        symbols.append(groups[0] * 3 + groups[1])
    return symbols


def descriptor_checksum(body: str) -> str:
    """The 8-character BIP-380 checksum of a descriptor without its ``#`` part."""
    checksum = _polymod([*_expand(body), 0, 0, 0, 0, 0, 0, 0, 0]) ^ 1
    return "".join(CHECKSUM_CHARSET[(checksum >> (5 * (7 - i))) & 31] for i in range(8))


def add_checksum(body: str) -> str:
    if "#" in body:
        raise DescriptorError("descriptor already has a checksum")
    return f"{body}#{descriptor_checksum(body)}"


def split_checksum(text: str, require_checksum: bool = True) -> str:
    """Verify the ``#checksum`` suffix and return the descriptor body."""
    body, sep, checksum = text.partition("#")
    if "#" in checksum:
        raise DescriptorError("multiple '#' symbols in descriptor")
    expected = descriptor_checksum(body)
    if not sep:
        if require_checksum:
            raise DescriptorError(f"missing descriptor checksum (expected #{expected})")
        return body
    if len(checksum) != 8:
        raise DescriptorError(f"descriptor checksum must be 8 characters, not {len(checksum)}")
    if checksum != expected:
        raise DescriptorError(f"bad descriptor checksum {checksum!r}, computed {expected!r}")
    return body


# -- key expressions ----------------------------------------------------------------------


@dataclass(frozen=True)
class DescriptorKey:
    """One KEY: a fixed pubkey, or an xpub with derivation ``steps`` and maybe ``/*``."""

    origin: KeyOrigin | None
    pubkey: bytes | None = None
    xpub: ExtendedKey | None = None
    steps: tuple[Step, ...] = ()
    wildcard: bool = False
    #: Hardened marker used when printing the origin (``'`` or ``h``), kept from the input.
    apostrophe: bool = field(default=False, compare=False)
    _bases: dict[int, ExtendedKey] = field(
        default_factory=dict, init=False, compare=False, repr=False
    )

    def __post_init__(self) -> None:
        if (self.pubkey is None) == (self.xpub is None):
            raise DescriptorError("a key needs exactly one of pubkey and xpub")
        if self.pubkey is not None and (self.steps or self.wildcard):
            raise DescriptorError("derivation steps are only allowed after an xpub")
        if self.xpub is not None and self.xpub.is_private:
            raise DescriptorError("extended private keys are not accepted in descriptors")

    @property
    def branch_count(self) -> int:
        """Number of multipath alternatives (1 without a multipath element)."""
        return next((len(s) for s in self.steps if isinstance(s, tuple)), 1)

    def resolved_steps(self, branch: int) -> list[int]:
        return [s[branch] if isinstance(s, tuple) else s for s in self.steps]

    def _base(self, branch: int) -> ExtendedKey:
        """The xpub after the fixed steps of ``branch`` (cached: it is the same per index)."""
        base = self._bases.get(branch)
        if base is None:
            assert self.xpub is not None
            base = derive_path(self.xpub, self.resolved_steps(branch))
            self._bases[branch] = base
        return base

    def derive(self, index: int, branch: int = 0) -> tuple[bytes, KeyOrigin]:
        """(compressed pubkey, full key origin) at ``index`` on multipath ``branch``."""
        if self.pubkey is not None:
            origin = self.origin or KeyOrigin(fingerprint(self.pubkey), [])
            return self.pubkey, origin.extend([])  # a copy: callers may touch .path
        assert self.xpub is not None
        branch = branch if self.branch_count > 1 else 0
        steps = self.resolved_steps(branch)
        key = self._base(branch)
        if self.wildcard:
            key = derive_child(key, index)
            steps.append(index)
        origin = self.origin or KeyOrigin(self.xpub.fingerprint, [])
        return key.public_key, origin.extend(steps)

    def child_at(self, origin: KeyOrigin) -> bytes | None:
        """The public key this xpub derives at the full key ``origin`` (a PSBT hint), or
        None when the origin is not below it; re-derived, so a hint cannot claim a key."""
        if self.xpub is None:
            return None
        own = self.origin or KeyOrigin(self.xpub.fingerprint, [])
        depth = len(own.path)
        if origin.fingerprint != own.fingerprint or list(origin.path[:depth]) != list(own.path):
            return None
        steps = list(origin.path[depth:])
        if len(steps) > _MAX_CHILD_STEPS or any(s >= HARDENED for s in steps):
            return None
        try:
            return derive_path(self.xpub, steps).public_key
        except BIP32Error:
            return None

    def select_branch(self, branch: int) -> DescriptorKey:
        """This key with its multipath element replaced by alternative ``branch``."""
        if self.branch_count == 1:
            return self
        steps = tuple(self.resolved_steps(branch))
        return replace(self, steps=steps)

    def _identity(self) -> tuple[object, ...]:
        """What makes two keys the same signer, whatever their origins say."""
        if self.pubkey is not None:
            return (self.pubkey,)
        assert self.xpub is not None
        return (self.xpub.key, self.xpub.chain_code, self.steps, self.wildcard)

    def __str__(self) -> str:
        marker = "'" if self.apostrophe else "h"
        origin = f"[{self.origin.format(marker)}]" if self.origin else ""
        if self.pubkey is not None:
            return origin + self.pubkey.hex()
        parts = [str(self.xpub), *(_format_step(s) for s in self.steps)]
        return origin + "/".join(parts + (["*"] if self.wildcard else []))


def _format_step(step: Step) -> str:
    return "<" + ";".join(map(str, step)) + ">" if isinstance(step, tuple) else str(step)


def _parse_origin(text: str) -> tuple[KeyOrigin | None, str, bool]:
    """Split ``[fp/path]rest``; returns (origin, rest, used apostrophe)."""
    if not text.startswith("["):
        if "]" in text:
            raise DescriptorError("key origin end ']' without a start '['")
        return None, text, False
    end = text.find("]")
    if end < 0:
        raise DescriptorError("key origin start '[' without an end ']'")
    rest = text[end + 1 :]
    if "[" in rest or "]" in rest or "[" in text[1:end]:
        raise DescriptorError("multiple key origins for one key")
    fp_text, *parts = text[1:end].split("/")
    if len(fp_text) != 8:
        raise DescriptorError(f"fingerprint is not 4 bytes ({len(fp_text)} characters, not 8)")
    if not _HEX.fullmatch(fp_text):
        raise DescriptorError(f"fingerprint {fp_text!r} is not hex")
    path = [_parse_origin_element(part) for part in parts]
    origin = KeyOrigin(bytes.fromhex(fp_text), path)
    return origin, rest, any(part.endswith("'") for part in parts)


def _parse_origin_element(part: str) -> int:
    if "*" in part or "<" in part:
        raise DescriptorError("wildcards and multipath are not allowed in a key origin")
    if not part:
        raise DescriptorError("empty element in key origin path")
    try:
        return parse_path_element(part, markers="'h")
    except BIP32Error as exc:
        raise DescriptorError(f"key origin: {exc}") from None


def _parse_index(text: str, what: str) -> int:
    if not text:
        raise DescriptorError(f"empty {what}")
    try:
        value = parse_path_element(text, markers="'h")
    except BIP32Error as exc:
        raise DescriptorError(f"{what}: {exc}") from None
    if value >= HARDENED:
        raise DescriptorError(
            f"hardened {what} {text!r} after an xpub needs the private key; put hardened "
            "steps in the key origin and give the xpub at that depth"
        )
    return value


def _parse_multipath(part: str) -> tuple[int, ...]:
    if not (part.startswith("<") and part.endswith(">")):
        raise DescriptorError(f"multipath element {part!r} must look like <a;b>")
    items = part[1:-1].split(";")
    if len(items) < 2:
        raise DescriptorError(f"multipath element {part!r} needs at least two indexes")
    values = tuple(_parse_index(item, "multipath index") for item in items)
    if len(set(values)) != len(values):
        raise DescriptorError(f"multipath element {part!r} repeats an index")
    return values


def _parse_steps(parts: list[str]) -> tuple[tuple[Step, ...], bool]:
    """Steps after an xpub and whether the last one is ``*``."""
    steps: list[Step] = []
    wildcard = False
    for i, part in enumerate(parts):
        if part in ("*'", "*h", "*H"):
            raise DescriptorError("hardened wildcard /*' cannot be derived from an xpub")
        if wildcard or (part == "*" and i != len(parts) - 1):
            raise DescriptorError("wildcard '*' must be the last derivation step")
        if part == "*":
            wildcard = True
        elif any(c in part for c in "<>;"):
            if any(isinstance(s, tuple) for s in steps):
                raise DescriptorError("only one multipath <a;b> element is allowed per key")
            steps.append(_parse_multipath(part))
        else:
            steps.append(_parse_index(part, "derivation step"))
    return tuple(steps), wildcard


def _parse_pubkey(text: str) -> bytes:
    pubkey = bytes.fromhex(text)
    if len(pubkey) == 65:
        raise DescriptorError("uncompressed public keys are not allowed in segwit descriptors")
    try:
        PublicKey(pubkey)
    except ValueError:
        raise DescriptorError(f"public key {text} is not a valid point") from None
    if pubkey[0] not in (2, 3):
        raise DescriptorError(f"public key {text} is not compressed")
    return pubkey


def _refuse_private(text: str) -> None:
    try:
        wif_to_private_key(text)
    except AddressError:
        return
    raise DescriptorError("private keys are not accepted in descriptors; give the public key")


def _parse_xpub(text: str) -> ExtendedKey:
    _refuse_private(text)
    try:
        xpub = ExtendedKey.parse(text)
    except BIP32Error as exc:
        raise DescriptorError(f"key {text[:12]}... is not valid: {exc}") from None
    if xpub.is_private:
        raise DescriptorError("extended private keys are not accepted in descriptors; use xpub")
    return xpub


def parse_key(text: str) -> DescriptorKey:
    """Parse one KEY expression of the forms Coldstation accepts."""
    if "(" in text or ")" in text:
        raise DescriptorError(f"expected a key, found a script expression {text[:20]!r}")
    origin, rest, apostrophe = _parse_origin(text)
    if not rest:
        raise DescriptorError("key origin with no key after it" if origin else "missing key")
    key_text, *path_parts = rest.split("/")
    if _HEX.fullmatch(key_text) and len(key_text) in (66, 130):
        if path_parts:
            raise DescriptorError("derivation steps are only allowed after an xpub")
        return DescriptorKey(origin, pubkey=_parse_pubkey(key_text), apostrophe=apostrophe)
    xpub = _parse_xpub(key_text)
    steps, wildcard = _parse_steps(path_parts)
    return DescriptorKey(origin, None, xpub, steps, wildcard, apostrophe)


# -- script expressions -------------------------------------------------------------------


class ScriptType(Enum):
    WPKH = "wpkh"
    SH_WPKH = "sh-wpkh"
    WSH = "wsh"
    SH_WSH = "sh-wsh"

    @property
    def is_multisig(self) -> bool:
        return self in (ScriptType.WSH, ScriptType.SH_WSH)


def _split_call(text: str) -> tuple[str, str] | None:
    """``name(args)`` -> (name, args); None for text that is not a call (a key)."""
    open_pos = text.find("(")
    if open_pos < 0:
        if ")" in text:
            raise DescriptorError(f"unbalanced ')' in {text[:30]!r}")
        return None
    depth = 0
    for pos in range(open_pos, len(text)):
        depth += {"(": 1, ")": -1}.get(text[pos], 0)
        if depth == 0:
            if pos != len(text) - 1:
                raise DescriptorError(f"unexpected text after ')': {text[pos + 1 :][:30]!r}")
            return text[:open_pos], text[open_pos + 1 : pos]
    raise DescriptorError(f"missing ')' in {text[:30]!r}")


def _split_args(text: str) -> list[str]:
    args: list[str] = []
    depth = start = 0
    for pos, c in enumerate(text):
        depth += {"(": 1, ")": -1}.get(c, 0)
        if c == "," and depth == 0:
            args.append(text[start:pos])
            start = pos + 1
    return [*args, text[start:]]


def _unsupported(name: str, context: str) -> DescriptorError:
    if name in _OTHER_FUNCTIONS:
        return DescriptorError(
            f"{name}() {context}is not supported: Coldstation uses wpkh(), "
            "wsh(multi/sortedmulti()) and their sh() wrappings"
        )
    return DescriptorError(f"unknown descriptor function {name!r}")


def _parse_multi(name: str, args_text: str) -> tuple[tuple[DescriptorKey, ...], int, bool]:
    args = _split_args(args_text)
    if len(args) < 2:
        raise DescriptorError(f"{name}() needs a threshold and at least one key")
    if not re.fullmatch(r"[0-9]+", args[0]):
        raise DescriptorError(f"multisig threshold {args[0]!r} is not a number")
    threshold, keys = int(args[0]), tuple(parse_key(a) for a in args[1:])
    if len(keys) > MAX_MULTISIG_KEYS:
        raise DescriptorError(f"{len(keys)} keys in multisig; at most {MAX_MULTISIG_KEYS}")
    if threshold < 1:
        raise DescriptorError("multisig threshold must be at least 1")
    if threshold > len(keys):
        raise DescriptorError(f"multisig threshold {threshold} is larger than {len(keys)} keys")
    if len({k._identity() for k in keys}) != len(keys):
        raise DescriptorError(f"duplicate key in {name}()")
    return keys, threshold, name == "sortedmulti"


def _parse_wsh(args: str, outer: str) -> tuple[tuple[DescriptorKey, ...], int, bool]:
    call = _split_call(args)
    if call is None:
        raise DescriptorError("wsh() needs a script (multi/sortedmulti), not a key")
    name, inner = call
    if name in ("multi", "sortedmulti"):
        return _parse_multi(name, inner)
    if name in ("wpkh", "wsh"):
        raise DescriptorError(f"{name}() cannot be inside wsh()")
    if name == "sh":
        raise DescriptorError("sh() can only be used at top level")
    raise _unsupported(name, f"inside {outer}wsh() ")


def _parse_sh(args: str) -> Descriptor:
    call = _split_call(args)
    if call is None:
        raise DescriptorError("sh() needs a script (wpkh or wsh), not a key")
    name, inner = call
    if name == "wpkh":
        return Descriptor(ScriptType.SH_WPKH, (parse_key(inner),))
    if name == "wsh":
        return Descriptor(ScriptType.SH_WSH, *_parse_wsh(inner, "sh("))
    if name == "sh":
        raise DescriptorError("sh() can only be used at top level")
    if name in ("multi", "sortedmulti"):
        raise DescriptorError(f"legacy sh({name}()) is not supported; use sh(wsh()) or wsh()")
    raise _unsupported(name, "inside sh() ")


def _parse_body(body: str) -> Descriptor:
    call = _split_call(body)
    if call is None:
        raise DescriptorError("a descriptor must start with a function such as wpkh( or wsh(")
    name, args = call
    if name == "wpkh":
        return Descriptor(ScriptType.WPKH, (parse_key(args),))
    if name == "wsh":
        return Descriptor(ScriptType.WSH, *_parse_wsh(args, ""))
    if name == "sh":
        return _parse_sh(args)
    if name in ("multi", "sortedmulti"):
        raise DescriptorError(f"bare {name}() is not supported; wrap it in wsh()")
    raise _unsupported(name, "")


# -- descriptors --------------------------------------------------------------------------


@dataclass(frozen=True)
class DerivedOutput:
    """Everything a PSBT updater needs for one output of a descriptor."""

    script_pubkey: bytes
    witness_script: bytes | None
    redeem_script: bytes | None
    #: (compressed pubkey, full key origin) in script order (sorted for sortedmulti).
    keys: tuple[tuple[bytes, KeyOrigin], ...]

    def address(self, network: Network) -> str:
        address = script_to_address(self.script_pubkey, network)
        if address is None:  # cannot happen for the script types we derive
            raise DescriptorError("derived script has no address")
        return address


@dataclass(frozen=True)
class Descriptor:
    """A parsed descriptor; ``threshold``/``sorted_multi`` only for multisig types."""

    script_type: ScriptType
    keys: tuple[DescriptorKey, ...]
    threshold: int | None = None
    sorted_multi: bool = False

    def __post_init__(self) -> None:
        self._check_shape()
        counts = {k.branch_count for k in self.keys} - {1}
        if len(counts) > 1:
            raise DescriptorError(f"multipath elements have different lengths {sorted(counts)}")
        kinds = {k.xpub.network for k in self.keys if k.xpub is not None}
        if len(kinds) > 1:
            raise DescriptorError("descriptor mixes mainnet (xpub) and testnet (tpub) keys")

    def _check_shape(self) -> None:
        if not self.script_type.is_multisig:
            if self.threshold is not None or self.sorted_multi or len(self.keys) != 1:
                raise DescriptorError(f"{self.script_type.value} takes exactly one key")
            return
        n = len(self.keys)
        if self.threshold is None or not 1 <= self.threshold <= n <= MAX_MULTISIG_KEYS:
            raise DescriptorError(f"invalid multisig {self.threshold}-of-{n}")

    @classmethod
    def parse(cls, text: str, require_checksum: bool = True) -> Descriptor:
        """Parse ``text``; without ``#checksum`` only if ``require_checksum`` is False."""
        return _parse_body(split_checksum(text.strip(), require_checksum))

    @property
    def is_ranged(self) -> bool:
        return any(k.wildcard for k in self.keys)

    @property
    def branch_count(self) -> int:
        """2 for a ``<0;1>`` receive/change descriptor, 1 without multipath."""
        return max(k.branch_count for k in self.keys)

    @property
    def network(self) -> Network | None:
        """MAINNET or TESTNET from the xpubs' versions; None with only hex pubkeys."""
        return next((k.xpub.network for k in self.keys if k.xpub is not None), None)

    def body(self) -> str:
        """The descriptor text without checksum."""
        if not self.script_type.is_multisig:
            inner = f"wpkh({self.keys[0]})"
        else:
            name = "sortedmulti" if self.sorted_multi else "multi"
            keys = ",".join(str(k) for k in self.keys)
            inner = f"wsh({name}({self.threshold},{keys}))"
        return f"sh({inner})" if self.script_type.value.startswith("sh-") else inner

    def __str__(self) -> str:
        return add_checksum(self.body())

    def expand_multipath(self) -> list[Descriptor]:
        """One single-path descriptor per multipath branch (BIP-389 expansion)."""
        return [
            replace(self, keys=tuple(k.select_branch(b) for k in self.keys))
            for b in range(self.branch_count)
        ]

    def _branch(self, change: bool) -> int:
        if not change:
            return 0
        if self.branch_count < 2:
            raise DescriptorError("descriptor has no change branch (no <a;b> multipath)")
        return 1

    def derive(self, index: int, change: bool = False) -> DerivedOutput:
        """Scripts and key origins at ``index`` (ignored if not ranged) of receive/change."""
        if not 0 <= index < HARDENED:
            raise DescriptorError(f"index {index} out of range 0..2^31-1")
        branch = self._branch(change)
        pairs = [k.derive(index, branch) for k in self.keys]
        if not self.script_type.is_multisig:
            return self._single_key(pairs[0])
        return self._multisig(pairs, index)

    def _single_key(self, pair: tuple[bytes, KeyOrigin]) -> DerivedOutput:
        program = p2wpkh_script(pair[0])
        if self.script_type is ScriptType.WPKH:
            return DerivedOutput(program, None, None, (pair,))
        return DerivedOutput(p2sh_wrap(program), None, program, (pair,))

    def _multisig(self, pairs: list[tuple[bytes, KeyOrigin]], index: int) -> DerivedOutput:
        if self.sorted_multi:
            pairs.sort(key=lambda pair: pair[0])
        pubkeys = [pk for pk, _ in pairs]
        if len(set(pubkeys)) != len(pubkeys):
            raise DescriptorError(f"duplicate public keys in multisig at index {index}")
        assert self.threshold is not None
        try:
            witness_script = multisig_script(self.threshold, pubkeys)
        except ScriptError as exc:
            raise DescriptorError(str(exc)) from None
        program = p2wsh_script(witness_script)
        if self.script_type is ScriptType.WSH:
            return DerivedOutput(program, witness_script, None, tuple(pairs))
        return DerivedOutput(p2sh_wrap(program), witness_script, program, tuple(pairs))

    def address(self, index: int, network: Network, change: bool = False) -> str:
        """The address at ``index``, refusing a network other than the xpubs' own."""
        kind = self.network
        if kind is not None and kind is not network.kind:
            raise DescriptorError(
                f"descriptor keys are for {kind.label}, address requested for {network.label}"
            )
        return self.derive(index, change).address(network)


def parse_descriptor(text: str, require_checksum: bool = True) -> Descriptor:
    return Descriptor.parse(text, require_checksum)
