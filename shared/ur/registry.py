"""UR registry types (BCR-2020-006 and successors): CBOR bytes <-> Coldstation objects.

The UR text and fountain layer only moves opaque CBOR; this module gives that CBOR its
meaning, so every wallet we talk to (Sparrow, Keystone, SeedSigner, Passport, Jade) is read
and written through one small, strict table. It works on CBOR bytes only: no Bytewords, no
fountain parts, no I/O.

Types:

* ``bytes`` - a CBOR byte string.
* ``psbt`` (v2, tag 40310) and ``crypto-psbt`` (v1, tag 310) - a byte string holding a
  BIP-174 PSBT. Same payload; the v1 name is what most wallets still exchange.
* ``crypto-output`` (BCR-2020-010, tag 308) - the output descriptor as nested CBOR tags
  (400 sh, 401 wsh, 404 wpkh, 406/407 multi/sortedmulti, ...) around ``crypto-hdkey`` (303)
  and ``crypto-eckey`` (306) keys, with ``crypto-keypath`` (304) origins and children.
* ``output-descriptor`` (BCR-2023-010, tag 40308) - ``{1: source text with @N
  placeholders, 2: [keys], 3: name, 4: note}`` with v2 keys (hdkey 40303, eckey 40306).
* ``crypto-account`` (BCR-2020-015, 311) and ``account-descriptor`` (BCR-2023-019, 40311)
  - read only: master fingerprint plus one output per script type.

Coldstation's descriptors are ``wpkh``, ``sh(wpkh)``, ``wsh(multi|sortedmulti)`` and
``sh(wsh(...))`` (see :mod:`shared.bitcoin.descriptor`); only those are encoded, and the
strict ``decode_*`` functions return a :class:`Descriptor` only for them. The ``read_*``
functions also describe the other shapes the formats carry (``pk``, ``pkh``, ``tr`` with a
key, ``combo``, ``cosigner``, bare or ``sh`` ``multi``) as :class:`DecodedOutput` text with a
reason instead of a descriptor. Never supported: private keys (refused outright),
``addr()``/``raw()``, ``tr()`` script trees, address keys, non-bitcoin coin types, child
index ranges and hardened child steps (they have no public-derivation descriptor form), and
multipath elements with more than two alternatives (the keypath "pair" holds two).

What the CBOR cannot say, and how we choose:

* ``crypto-hdkey`` has no BIP-32 child-number field: the xpub is rebuilt with depth = keypath
  depth (else the number of origin steps), parent fingerprint = field 8 (else the source
  fingerprint of a one-step origin), child number = the last origin step. An encode whose
  xpub would not come back byte for byte is refused.
* A key without a ``[fingerprint/path]`` origin is written with a keypath that has no source
  fingerprint: ``{1: [last step] or [], 3: depth}``, which keeps the xpub exact and reads
  back as a key without origin (the BCR-2020-010 vector 5 writes a master xpub this way).
* Field 8 (parent fingerprint) is left out when the origin is one step and its source
  fingerprint already is the parent (BCR-2020-007 allows that; vector 5 does it).
* Whether hardened steps print as ``'`` or ``h`` is not recorded; readers take a
  ``hardened_marker`` (default ``'``, as in the BCR examples and Sparrow).
* We write untagged top-level CBOR (a UR's body) in canonical (RFC 8949 core
  deterministic) form; we read the top level tagged or untagged, and accept v1 or v2 tags
  for embedded keys and keypaths in either format.

Hostile input: sizes are capped before decoding, trailing bytes are refused, and every
cbor2 error, wrong type, wrong tag, missing or unknown map key, out-of-range number and
over-deep nesting becomes a :class:`RegistryError` naming what is wrong.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import cbor2

from shared.bitcoin.address import Network
from shared.bitcoin.bip32 import HARDENED, BIP32Error, ExtendedKey, KeyOrigin
from shared.bitcoin.descriptor import (
    Descriptor,
    DescriptorError,
    DescriptorKey,
    ScriptType,
    Step,
    split_checksum,
)
from shared.bitcoin.ecdsa import is_valid_pubkey
from shared.psbt.model import MAGIC as PSBT_MAGIC
from shared.psbt.model import MAX_PSBT_SIZE, Psbt

#: Byte strings (``bytes``, PSBTs): the PSBT cap plus a tag and a 9-byte string header.
MAX_BYTES_CBOR = MAX_PSBT_SIZE + 16
#: Descriptors and accounts are a few kB; 64 KiB bounds what a hostile map can allocate.
MAX_DESCRIPTOR_CBOR = 64 * 1024
#: Script nesting: sh(wsh(multi(...))) is 3 deep; anything past 4 is refused.
MAX_SCRIPT_DEPTH = 4
MAX_KEYS = 20
MAX_ACCOUNT_OUTPUTS = 64
MAX_PATH_COMPONENTS = 255
_U32 = 2**32

# v1 (BCR-2020-006 low numbers) and v2 (IANA-registered) tags.
TAG_HDKEY = (303, 40303)
TAG_KEYPATH = (304, 40304)
TAG_COININFO = (305, 40305)
TAG_ECKEY = (306, 40306)
TAG_ADDRESS = (307, 40307)
TAG_OUTPUT = (308, 40308)
TAG_PSBT = (310, 40310)
TAG_ACCOUNT = (311, 40311)

_SCRIPT_TAGS = {
    400: "sh",
    401: "wsh",
    402: "pk",
    403: "pkh",
    404: "wpkh",
    405: "combo",
    406: "multi",
    407: "sortedmulti",
    307: "addr",
    408: "raw",
    409: "tr",
    410: "cosigner",
}
_SCRIPT_TAG_OF = {name: tag for tag, name in _SCRIPT_TAGS.items() if tag != 307}
_KEY_FUNCTIONS = frozenset({"pk", "pkh", "wpkh", "combo", "cosigner", "tr"})
_WRAPPERS = frozenset({"sh", "wsh"})
_PLACEHOLDER = re.compile(r"@(0|[1-9][0-9]{0,3})(?![0-9])")
_FUNCTION_PREFIX = re.compile(r"([a-z_]+)\(")


class RegistryError(ValueError):
    """CBOR that is not a valid (or not a supported) value of a UR registry type."""


# -- CBOR in and out ----------------------------------------------------------------------


def _loads(data: bytes, limit: int, what: str) -> Any:
    """Decode exactly one CBOR item, refusing oversize input and trailing bytes."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise RegistryError(f"{what}: expected CBOR bytes, got {type(data).__name__}")
    data = bytes(data)
    if not data:
        raise RegistryError(f"{what}: empty CBOR")
    if len(data) > limit:
        raise RegistryError(f"{what}: CBOR is {len(data)} bytes, the limit is {limit}")
    stream = io.BytesIO(data)
    try:
        value = cbor2.CBORDecoder(stream).decode()
    except Exception as exc:  # cbor2 raises many types on hostile input; none may escape
        raise RegistryError(f"{what}: invalid CBOR ({exc})") from None
    if stream.tell() != len(data):
        raise RegistryError(f"{what}: {len(data) - stream.tell()} trailing bytes after CBOR")
    return value


def _dumps(value: Any) -> bytes:
    return cbor2.dumps(value, canonical=True)


# -- strict field readers -----------------------------------------------------------------


def _uint(value: Any, what: str, limit: int = _U32) -> int:
    if type(value) is not int or not 0 <= value < limit:
        raise RegistryError(f"{what} must be an unsigned integer below {limit}, got {value!r}")
    return value


def _bool(value: Any, what: str) -> bool:
    if type(value) is not bool:
        raise RegistryError(f"{what} must be a boolean, got {type(value).__name__}")
    return value


def _bytes(value: Any, what: str, sizes: tuple[int, ...] | None = None) -> bytes:
    if not isinstance(value, bytes):
        raise RegistryError(f"{what} must be a byte string, got {type(value).__name__}")
    if sizes is not None and len(value) not in sizes:
        expected = " or ".join(map(str, sizes))
        raise RegistryError(f"{what} must be {expected} bytes, not {len(value)}")
    return value


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise RegistryError(f"{what} must be a text string, got {type(value).__name__}")
    return value


def _array(value: Any, what: str, limit: int) -> Sequence[Any]:
    if not isinstance(value, list | tuple):
        raise RegistryError(f"{what} must be an array, got {type(value).__name__}")
    if len(value) > limit:
        raise RegistryError(f"{what} has {len(value)} items, at most {limit} allowed")
    return value


def _map(
    value: Any, what: str, allowed: set[int], required: frozenset[int] | set[int] = frozenset()
) -> Mapping[int, Any]:
    if not isinstance(value, Mapping):
        raise RegistryError(f"{what} must be a map, got {type(value).__name__}")
    for key in value:
        if type(key) is not int or key not in allowed:
            raise RegistryError(f"{what} has unexpected key {key!r}")
    missing = sorted(required - set(value))
    if missing:
        raise RegistryError(f"{what} is missing key {missing[0]}")
    return value


def _tagged(value: Any, tags: Sequence[int], what: str) -> Any:
    """The content of ``value``, which must carry one of ``tags``."""
    if not isinstance(value, cbor2.CBORTag):
        raise RegistryError(f"{what} must be tagged {' or '.join(map(str, tags))}")
    if value.tag not in tags:
        raise RegistryError(f"{what} has tag {value.tag}, expected {' or '.join(map(str, tags))}")
    return value.value


def _maybe_tagged(value: Any, tags: Sequence[int], what: str) -> Any:
    """Strip an optional top-level tag (a UR body is untagged, embedded values are tagged)."""
    if isinstance(value, cbor2.CBORTag) and value.tag in tags:
        return value.value
    return value


# -- bytes and PSBT -----------------------------------------------------------------------


def encode_bytes(data: bytes) -> bytes:
    """``bytes``: a CBOR byte string."""
    if not isinstance(data, bytes | bytearray):
        raise RegistryError(f"bytes: expected bytes, got {type(data).__name__}")
    return _dumps(bytes(data))


def _byte_string(cbor: bytes, tags: Sequence[int], what: str) -> bytes:
    if isinstance(cbor, bytes | bytearray) and cbor and cbor[0] >> 5 not in (2, 6):
        raise RegistryError(f"{what}: CBOR must be a byte string")  # refuse before decoding
    value = _maybe_tagged(_loads(cbor, MAX_BYTES_CBOR, what), tags, what)
    return _bytes(value, f"{what} payload")


def decode_bytes(cbor: bytes) -> bytes:
    return _byte_string(cbor, (), "bytes")


def encode_psbt(psbt: bytes | Psbt) -> bytes:
    """``psbt``/``crypto-psbt``: the serialized PSBT as an (untagged) CBOR byte string."""
    raw = psbt.serialize() if isinstance(psbt, Psbt) else psbt
    if not isinstance(raw, bytes | bytearray) or not bytes(raw).startswith(PSBT_MAGIC):
        raise RegistryError("psbt: data does not start with the PSBT magic 'psbt\\xff'")
    return _dumps(bytes(raw))


def decode_psbt(cbor: bytes) -> bytes:
    """The PSBT bytes of a ``psbt``/``crypto-psbt`` (tag 40310/310 accepted, not needed)."""
    raw = _byte_string(cbor, TAG_PSBT, "psbt")
    if not raw.startswith(PSBT_MAGIC):
        raise RegistryError("psbt: payload does not start with the PSBT magic 'psbt\\xff'")
    return raw


def parse_psbt(cbor: bytes) -> Psbt:
    """:func:`decode_psbt` then :meth:`Psbt.parse` (which raises PsbtError if invalid)."""
    return Psbt.parse(decode_psbt(cbor))


# -- keypaths (crypto-keypath / keypath) ----------------------------------------------------


@dataclass(frozen=True)
class _Keypath:
    #: Each component: an index (hardened bit set), "*" (wildcard) or a pair of indexes.
    components: tuple[int | str | tuple[int, int], ...]
    fingerprint: bytes | None
    depth: int | None


def _index(items: Sequence[Any], pos: int, what: str) -> int:
    index = _uint(items[pos], f"{what} index", HARDENED)
    if pos + 1 >= len(items):
        raise RegistryError(f"{what}: index {index} has no hardened flag")
    return index + HARDENED if _bool(items[pos + 1], f"{what} hardened flag") else index


def _component(
    items: Sequence[Any], pos: int, what: str
) -> tuple[int | str | tuple[int, int], int]:
    """One path component starting at ``pos``; returns it and the next position."""
    item = items[pos]
    if isinstance(item, int):  # bool included, so _uint names it
        return _index(items, pos, what), pos + 2
    group = _array(item, what, 4)
    if len(group) == 4:  # child-pair: [index, hardened, index, hardened]
        return (_index(group, 0, what), _index(group, 2, what)), pos + 1
    if pos + 1 >= len(items):
        raise RegistryError(f"{what}: wildcard or range without a hardened flag")
    if _bool(items[pos + 1], f"{what} hardened flag"):
        raise RegistryError(f"{what}: hardened wildcards and ranges cannot be derived publicly")
    if not group:
        return "*", pos + 2
    if len(group) == 2:
        raise RegistryError(f"{what}: child index ranges have no descriptor equivalent")
    raise RegistryError(f"{what}: path component array of {len(group)} items")


def _read_keypath(value: Any, what: str) -> _Keypath:
    body = _map(_tagged(value, TAG_KEYPATH, what), what, {1, 2, 3}, {1})
    items = _array(body[1], f"{what} components", 2 * MAX_PATH_COMPONENTS)
    components: list[int | str | tuple[int, int]] = []
    pos = 0
    while pos < len(items):
        component, pos = _component(items, pos, what)
        components.append(component)
    fingerprint = None
    if 2 in body:
        value = _uint(body[2], f"{what} source fingerprint")
        if value == 0:
            raise RegistryError(f"{what} source fingerprint must not be 0")
        fingerprint = value.to_bytes(4, "big")
    depth = _uint(body[3], f"{what} depth", 256) if 3 in body else None
    return _Keypath(tuple(components), fingerprint, depth)


def _origin_steps(path: _Keypath, what: str) -> list[int]:
    if any(not isinstance(c, int) for c in path.components):
        raise RegistryError(f"{what}: wildcards and pairs are not allowed in a key origin")
    steps = [c for c in path.components if isinstance(c, int)]
    if path.depth is not None and path.depth < len(steps):
        raise RegistryError(f"{what}: depth {path.depth} is less than its {len(steps)} steps")
    return steps


def _child_steps(path: _Keypath, what: str) -> tuple[tuple[Step, ...], bool]:
    steps: list[Step] = []
    wildcard = False
    for component in path.components:
        if wildcard:
            raise RegistryError(f"{what}: wildcard must be the last step")
        if isinstance(component, str):
            wildcard = True
            continue
        values = component if isinstance(component, tuple) else (component,)
        if any(v >= HARDENED for v in values):
            raise RegistryError(f"{what}: hardened child steps need the private key")
        if isinstance(component, tuple):
            if any(isinstance(s, tuple) for s in steps):
                raise RegistryError(f"{what}: more than one multipath pair")
            if component[0] == component[1]:
                raise RegistryError(f"{what}: multipath pair repeats index {component[0]}")
        steps.append(component)
    return tuple(steps), wildcard


def _write_components(components: Sequence[Step | str]) -> list[Any]:
    out: list[Any] = []
    for component in components:
        if component == "*":
            out += [[], False]
        elif isinstance(component, tuple):
            pair: list[Any] = []
            for value in component:
                pair += [value & ~HARDENED, value >= HARDENED]
            out.append(pair)
        else:
            assert isinstance(component, int)
            out += [component & ~HARDENED, component >= HARDENED]
    return out


def _keypath(
    tag: int, components: Sequence[Step | str], fingerprint: bytes | None, depth: int | None
) -> cbor2.CBORTag:
    body: dict[int, Any] = {1: _write_components(components)}
    if fingerprint is not None:
        body[2] = int.from_bytes(fingerprint, "big")
    if depth is not None:
        body[3] = depth
    return cbor2.CBORTag(tag, body)


# -- keys (crypto-hdkey / crypto-eckey) -------------------------------------------------------


def _check_pubkey(data: bytes, what: str) -> bytes:
    if len(data) == 65:
        raise RegistryError(f"{what}: uncompressed public keys are not supported")
    if len(data) == 32:
        raise RegistryError(f"{what}: private keys are not accepted")
    if len(data) != 33 or data[0] not in (2, 3):
        raise RegistryError(f"{what}: not a compressed public key ({len(data)} bytes)")
    if not is_valid_pubkey(data):
        raise RegistryError(f"{what}: public key is not a valid point")
    return data


def _read_eckey(body: Any, what: str) -> bytes:
    body = _map(body, what, {1, 2, 3}, {3})
    if 1 in body and _uint(body[1], f"{what} curve") != 0:
        raise RegistryError(f"{what}: curve {body[1]} is not secp256k1 (0)")
    if 2 in body and _bool(body[2], f"{what} is-private"):
        raise RegistryError(f"{what}: private keys are not accepted")
    return _check_pubkey(_bytes(body[3], f"{what} data"), what)


def _read_network(value: Any, what: str) -> Network:
    body = _map(_tagged(value, TAG_COININFO, what), what, {1, 2})
    coin = _uint(body.get(1, 0), f"{what} coin type", HARDENED)
    if coin != 0:
        raise RegistryError(f"{what}: coin type {coin} is not bitcoin (0)")
    if 2 not in body:
        return Network.MAINNET
    network = body[2]
    if type(network) is not int or network not in (0, 1):
        raise RegistryError(f"{what}: network {network!r} is neither mainnet (0) nor testnet (1)")
    return Network.TESTNET if network else Network.MAINNET


def _origin(path: _Keypath | None, steps: list[int], default_fp: bytes | None) -> KeyOrigin | None:
    if path is None:
        return None
    fingerprint = path.fingerprint or default_fp
    return KeyOrigin(fingerprint, steps) if fingerprint is not None else None


def _rebuild_xpub(
    body: Mapping[int, Any], network: Network, path: _Keypath | None, steps: list[int], what: str
) -> ExtendedKey:
    """The BIP-32 xpub the hdkey fields describe (see the module docstring for the rules)."""
    depth = path.depth if path is not None and path.depth is not None else len(steps)
    if 8 in body:
        parent = _uint(body[8], f"{what} parent fingerprint").to_bytes(4, "big")
    elif path is not None and path.fingerprint is not None and len(steps) == 1 and depth == 1:
        parent = path.fingerprint
    else:
        parent = bytes(4)
    child = steps[-1] if steps else 0
    chain_code = _bytes(body[4], f"{what} chain code", (32,))
    try:
        xpub = ExtendedKey(network.xpub_version, depth, parent, child, chain_code, body[3])
        return ExtendedKey.from_bytes(xpub.serialize())  # every BIP-32 consistency check
    except BIP32Error as exc:
        raise RegistryError(f"{what}: not a valid extended key ({exc})") from None


def _read_hdkey(body: Any, what: str, marker: str, default_fp: bytes | None) -> DescriptorKey:
    body = _map(body, what, set(range(1, 11)), {3})
    if 1 in body and _bool(body[1], f"{what} is-master"):
        raise RegistryError(f"{what}: master keys are private keys and are not accepted")
    if 2 in body and _bool(body[2], f"{what} is-private"):
        raise RegistryError(f"{what}: private keys are not accepted")
    key = _check_pubkey(_bytes(body[3], f"{what} key data"), what)
    network = _read_network(body[5], f"{what} use-info") if 5 in body else Network.MAINNET
    for field, name in ((9, "name"), (10, "note")):
        if field in body:
            _text(body[field], f"{what} {name}")
    path = _read_keypath(body[6], f"{what} origin") if 6 in body else None
    steps = _origin_steps(path, f"{what} origin") if path is not None else []
    origin = _origin(path, steps, default_fp)
    apostrophe = marker == "'"
    if 4 not in body:
        if 7 in body:
            raise RegistryError(f"{what}: children given without a chain code")
        return _descriptor_key(origin, apostrophe, pubkey=key)
    xpub = _rebuild_xpub(body, network, path, steps, what)
    children: tuple[Step, ...] = ()
    wildcard = False
    if 7 in body:
        children, wildcard = _child_steps(_read_keypath(body[7], f"{what} children"), what)
    return _descriptor_key(origin, apostrophe, xpub=xpub, steps=children, wildcard=wildcard)


def _descriptor_key(origin: KeyOrigin | None, apostrophe: bool, **fields: Any) -> DescriptorKey:
    try:
        return DescriptorKey(origin, apostrophe=apostrophe, **fields)
    except DescriptorError as exc:
        raise RegistryError(f"key: {exc}") from None


def _read_key(value: Any, what: str, marker: str, default_fp: bytes | None) -> DescriptorKey:
    if isinstance(value, cbor2.CBORTag) and value.tag in TAG_ECKEY:
        return _descriptor_key(None, marker == "'", pubkey=_read_eckey(value.value, what))
    if isinstance(value, cbor2.CBORTag) and value.tag in TAG_HDKEY:
        return _read_hdkey(value.value, what, marker, default_fp)
    if isinstance(value, cbor2.CBORTag) and value.tag in TAG_ADDRESS:
        raise RegistryError(f"{what}: address keys (addr) are not supported")
    tag = value.tag if isinstance(value, cbor2.CBORTag) else None
    raise RegistryError(f"{what}: expected an hdkey (303/40303) or eckey (306/40306), not {tag}")


def _parent_field(xpub: ExtendedKey, origin: KeyOrigin | None) -> int | None:
    if xpub.parent_fingerprint == bytes(4):
        return None
    parent_is_source = origin is not None and origin.fingerprint == xpub.parent_fingerprint
    if parent_is_source and origin is not None and len(origin.path) == 1:
        return None
    return int.from_bytes(xpub.parent_fingerprint, "big")


def _xpub_origin(key: DescriptorKey, xpub: ExtendedKey, tag: int) -> cbor2.CBORTag:
    if key.origin is None:  # no source fingerprint: reads back as a key without origin
        steps = [xpub.child_number] if xpub.depth else []
        return _keypath(tag, steps, None, xpub.depth)
    depth = xpub.depth if xpub.depth != len(key.origin.path) else None
    return _keypath(tag, key.origin.path, key.origin.fingerprint, depth)


def _write_key(key: DescriptorKey, v2: bool) -> cbor2.CBORTag:
    tags = 1 if v2 else 0
    if key.pubkey is not None:
        if key.origin is None:
            return cbor2.CBORTag(TAG_ECKEY[tags], {3: key.pubkey})
        origin = _keypath(TAG_KEYPATH[tags], key.origin.path, key.origin.fingerprint, None)
        return cbor2.CBORTag(TAG_HDKEY[tags], {3: key.pubkey, 6: origin})
    xpub = key.xpub
    assert xpub is not None
    body: dict[int, Any] = {3: xpub.key, 4: xpub.chain_code}
    if xpub.network is not Network.MAINNET:
        body[5] = cbor2.CBORTag(TAG_COININFO[tags], {2: 1})
    body[6] = _xpub_origin(key, xpub, TAG_KEYPATH[tags])
    if key.steps or key.wildcard:
        children = [*key.steps, *(["*"] if key.wildcard else [])]
        body[7] = _keypath(TAG_KEYPATH[tags], children, None, None)
    parent = _parent_field(xpub, key.origin)
    if parent is not None:
        body[8] = parent
    _check_round_trip(key, body)
    return cbor2.CBORTag(TAG_HDKEY[tags], body)


def _check_round_trip(key: DescriptorKey, body: dict[int, Any]) -> None:
    """Refuse to write an hdkey that would not read back as the same xpub and origin."""
    for step in key.steps:
        if isinstance(step, tuple) and len(step) != 2:
            raise RegistryError(
                f"multipath element with {len(step)} alternatives: the keypath pair holds two"
            )
    back = _read_hdkey(body, "hdkey", "'", None)
    assert key.xpub is not None and back.xpub is not None
    if back.xpub.serialize() != key.xpub.serialize() or back.origin != key.origin:
        raise RegistryError(
            f"key {str(key.xpub)[:16]}...: its key origin does not match the xpub's own depth, "
            "parent fingerprint or child number, and crypto-hdkey cannot carry both"
        )


# -- decoded outputs ------------------------------------------------------------------------


@dataclass(frozen=True)
class DecodedOutput:
    """One output descriptor as read, whether or not Coldstation can use it.

    ``text`` is the descriptor without checksum (empty if the entry was unreadable),
    ``shape`` its script functions outside-in (``("sh", "wsh", "cosigner")``), ``keys`` its
    keys in order. ``descriptor`` is set when the shape is one Coldstation uses; otherwise
    ``reason`` says why not.
    """

    text: str
    shape: tuple[str, ...]
    keys: tuple[DescriptorKey, ...]
    descriptor: Descriptor | None
    reason: str | None = None
    name: str | None = None
    note: str | None = None

    @property
    def supported(self) -> bool:
        return self.descriptor is not None


def _finish(
    text: str, shape: tuple[str, ...], keys: tuple[DescriptorKey, ...], **meta: str | None
) -> DecodedOutput:
    if "cosigner" in shape:
        reason = "cosigner() offers a multisig key (see Account.cosigner), it is not a wallet"
        return DecodedOutput(text, shape, keys, None, reason, **meta)
    try:
        descriptor = Descriptor.parse(text, require_checksum=False)
    except DescriptorError as exc:
        return DecodedOutput(text, shape, keys, None, str(exc), **meta)
    return DecodedOutput(text, shape, keys, descriptor, None, **meta)


@dataclass(frozen=True)
class _Script:
    shape: tuple[str, ...]
    keys: tuple[DescriptorKey, ...]
    threshold: int | None

    def text(self) -> str:
        keys = ",".join(str(k) for k in self.keys)
        inner = f"{self.threshold},{keys}" if self.threshold is not None else keys
        text = f"{self.shape[-1]}({inner})"
        for name in reversed(self.shape[:-1]):
            text = f"{name}({text})"
        return text


def _read_multi(body: Any, what: str, marker: str, default_fp: bytes | None) -> _Script:
    body = _map(body, what, {1, 2}, {1, 2})
    threshold = _uint(body[1], f"{what} threshold", MAX_KEYS + 1)
    items = _array(body[2], f"{what} keys", MAX_KEYS)
    if not items:
        raise RegistryError(f"{what}: no keys")
    keys = tuple(_read_key(k, f"{what} key {i}", marker, default_fp) for i, k in enumerate(items))
    return _Script((), keys, threshold)


def _read_script(node: Any, level: int, marker: str, default_fp: bytes | None) -> _Script:
    if level > MAX_SCRIPT_DEPTH:
        raise RegistryError(f"script expressions nested more than {MAX_SCRIPT_DEPTH} deep")
    if not isinstance(node, cbor2.CBORTag) or node.tag not in _SCRIPT_TAGS:
        tag = node.tag if isinstance(node, cbor2.CBORTag) else type(node).__name__
        raise RegistryError(f"expected a script expression tag (400-410), got {tag}")
    name = _SCRIPT_TAGS[node.tag]
    if name in ("addr", "raw"):
        raise RegistryError(f"{name}() outputs are not supported")
    if name in _WRAPPERS:
        inner = _read_script(node.value, level + 1, marker, default_fp)
        return _Script((name, *inner.shape), inner.keys, inner.threshold)
    if name in ("multi", "sortedmulti"):
        multi = _read_multi(node.value, f"{name}()", marker, default_fp)
        return _Script((name,), multi.keys, multi.threshold)
    if name == "tr" and not (
        isinstance(node.value, cbor2.CBORTag) and node.value.tag in TAG_HDKEY + TAG_ECKEY
    ):
        raise RegistryError("tr() with a script tree is not supported (key-path tr(KEY) only)")
    return _Script((name,), (_read_key(node.value, f"{name}() key", marker, default_fp),), None)


def _check_marker(marker: str) -> str:
    if marker not in ("'", "h"):
        raise RegistryError(f'hardened marker must be "\'" or "h", not {marker!r}')
    return marker


def _read_v1(value: Any, marker: str, default_fp: bytes | None) -> DecodedOutput:
    script = _read_script(value, 1, _check_marker(marker), default_fp)
    return _finish(script.text(), script.shape, script.keys)


def read_crypto_output(cbor: bytes, *, hardened_marker: str = "'") -> DecodedOutput:
    """Any BCR-2020-010 ``crypto-output`` with public keys, as text plus keys."""
    value = _loads(cbor, MAX_DESCRIPTOR_CBOR, "crypto-output")
    return _read_v1(_maybe_tagged(value, TAG_OUTPUT[:1], "crypto-output"), hardened_marker, None)


def _require_supported(output: DecodedOutput) -> Descriptor:
    if output.descriptor is None:
        raise RegistryError(f"{output.text}: {output.reason}")
    return output.descriptor


def decode_crypto_output(cbor: bytes, *, hardened_marker: str = "'") -> Descriptor:
    """A ``crypto-output`` as a Descriptor; RegistryError for shapes Coldstation does not use."""
    return _require_supported(read_crypto_output(cbor, hardened_marker=hardened_marker))


def _write_v1_script(descriptor: Descriptor) -> cbor2.CBORTag:
    keys = [_write_key(k, v2=False) for k in descriptor.keys]
    if descriptor.script_type.is_multisig:
        name = "sortedmulti" if descriptor.sorted_multi else "multi"
        node = cbor2.CBORTag(_SCRIPT_TAG_OF[name], {1: descriptor.threshold, 2: keys})
        node = cbor2.CBORTag(_SCRIPT_TAG_OF["wsh"], node)
    else:
        node = cbor2.CBORTag(_SCRIPT_TAG_OF["wpkh"], keys[0])
    if descriptor.script_type in (ScriptType.SH_WPKH, ScriptType.SH_WSH):
        node = cbor2.CBORTag(_SCRIPT_TAG_OF["sh"], node)
    return node


def _check_descriptor(descriptor: Any) -> Descriptor:
    if not isinstance(descriptor, Descriptor):
        raise RegistryError(f"expected a Descriptor, got {type(descriptor).__name__}")
    return descriptor


def encode_crypto_output(descriptor: Descriptor) -> bytes:
    """BCR-2020-010 ``crypto-output`` CBOR (untagged, canonical) for a Descriptor."""
    return _dumps(_write_v1_script(_check_descriptor(descriptor)))


# -- output-descriptor (BCR-2023-010) --------------------------------------------------------


def _source_text(descriptor: Descriptor) -> str:
    """The descriptor text with keys replaced by ``@0``, ``@1``, ..."""
    keys = ",".join(f"@{i}" for i in range(len(descriptor.keys)))
    if descriptor.script_type.is_multisig:
        name = "sortedmulti" if descriptor.sorted_multi else "multi"
        inner = f"wsh({name}({descriptor.threshold},{keys}))"
    else:
        inner = f"wpkh({keys})"
    sh = descriptor.script_type in (ScriptType.SH_WPKH, ScriptType.SH_WSH)
    return f"sh({inner})" if sh else inner


def encode_output_descriptor(
    descriptor: Descriptor, name: str | None = None, note: str | None = None
) -> bytes:
    """BCR-2023-010 ``output-descriptor`` CBOR (untagged, canonical) for a Descriptor."""
    descriptor = _check_descriptor(descriptor)
    body: dict[int, Any] = {
        1: _source_text(descriptor),
        2: [_write_key(k, v2=True) for k in descriptor.keys],
    }
    for field, value in ((3, name), (4, note)):
        if value is not None:
            body[field] = _text(value, "output-descriptor name/note")
    return _dumps(body)


def _substitute(source: str, keys: list[DescriptorKey]) -> str:
    used: set[int] = set()

    def replace(match: re.Match[str]) -> str:
        index = int(match.group(1))
        if index >= len(keys):
            raise RegistryError(f"output-descriptor: placeholder @{index} but {len(keys)} keys")
        used.add(index)
        return str(keys[index])

    text = _PLACEHOLDER.sub(replace, source)
    if "@" in text:
        raise RegistryError("output-descriptor: malformed '@' placeholder in source")
    if len(used) != len(keys):
        unused = min(set(range(len(keys))) - used)
        raise RegistryError(f"output-descriptor: key @{unused} is not used in the source")
    return text


def _shape(text: str) -> tuple[str, ...]:
    shape: list[str] = []
    pos = 0
    while match := _FUNCTION_PREFIX.match(text, pos):
        shape.append(match.group(1))
        pos = match.end()
    return tuple(shape)


def _read_v2(value: Any, marker: str, default_fp: bytes | None) -> DecodedOutput:
    marker = _check_marker(marker)
    body = _map(value, "output-descriptor", {1, 2, 3, 4}, {1})
    source = _text(body[1], "output-descriptor source")
    if not source.isascii() or not source.isprintable():
        raise RegistryError("output-descriptor: source has non-printable or non-ASCII characters")
    items = _array(body.get(2, []), "output-descriptor keys", MAX_KEYS)
    keys = [
        _read_key(k, f"output-descriptor key @{i}", marker, default_fp) for i, k in enumerate(items)
    ]
    text = _substitute(source, keys)
    if "#" in text:
        try:
            text = split_checksum(text)
        except DescriptorError as exc:
            raise RegistryError(f"output-descriptor: {exc}") from None
    name = _text(body[3], "output-descriptor name") if 3 in body else None
    note = _text(body[4], "output-descriptor note") if 4 in body else None
    return _finish(text, _shape(text), tuple(keys), name=name, note=note)


def read_output_descriptor(cbor: bytes, *, hardened_marker: str = "'") -> DecodedOutput:
    """Any BCR-2023-010 ``output-descriptor`` with public keys, as text plus keys."""
    value = _loads(cbor, MAX_DESCRIPTOR_CBOR, "output-descriptor")
    value = _maybe_tagged(value, TAG_OUTPUT[1:], "output-descriptor")
    return _read_v2(value, hardened_marker, None)


def decode_output_descriptor(cbor: bytes, *, hardened_marker: str = "'") -> Descriptor:
    """An ``output-descriptor`` as a Descriptor; RegistryError for other shapes."""
    return _require_supported(read_output_descriptor(cbor, hardened_marker=hardened_marker))


# -- accounts ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Account:
    """A ``crypto-account``/``account-descriptor``: a master fingerprint and its outputs.

    Every entry is kept: ones Coldstation cannot use (``pkh``, ``tr``, ``cosigner``, or an
    entry that does not decode) carry their ``reason`` instead of a descriptor.
    """

    master_fingerprint: bytes
    outputs: tuple[DecodedOutput, ...]

    def descriptors(self) -> list[Descriptor]:
        return [o.descriptor for o in self.outputs if o.descriptor is not None]

    def cosigner(self, script_type: ScriptType) -> DescriptorKey | None:
        """The multisig cosigner key offered for ``wsh`` or ``sh(wsh)``, if any."""
        shapes = {
            ScriptType.WSH: ("wsh", "cosigner"),
            ScriptType.SH_WSH: ("sh", "wsh", "cosigner"),
        }
        wanted = shapes.get(script_type)
        return next((o.keys[0] for o in self.outputs if o.shape == wanted), None)


def _read_entry(item: Any, v2: bool, marker: str, master_fp: bytes) -> DecodedOutput:
    """One account entry. A v1 entry may come without its crypto-output (308) tag, as the
    script expression itself (``#6.404(#6.303(...))``): SeedSigner and the Keystone SDK
    write it so, and BCR-2020-015's own examples are read either way."""
    try:
        if v2:
            return _read_v2(_tagged(item, TAG_OUTPUT[1:], "account output"), marker, master_fp)
        return _read_v1(_maybe_tagged(item, TAG_OUTPUT[:1], "account output"), marker, master_fp)
    except RegistryError as exc:
        return DecodedOutput("", (), (), None, f"unreadable entry: {exc}")


def _read_account(cbor: bytes, v2: bool, marker: str) -> Account:
    what = "account-descriptor" if v2 else "crypto-account"
    marker = _check_marker(marker)
    value = _loads(cbor, MAX_DESCRIPTOR_CBOR, what)
    tag = TAG_ACCOUNT[1] if v2 else TAG_ACCOUNT[0]
    body = _map(_maybe_tagged(value, (tag,), what), what, {1, 2}, {1, 2})
    fingerprint = _uint(body[1], f"{what} master fingerprint").to_bytes(4, "big")
    items = _array(body[2], f"{what} outputs", MAX_ACCOUNT_OUTPUTS)
    if not items:
        raise RegistryError(f"{what}: no output descriptors")
    outputs = tuple(_read_entry(item, v2, marker, fingerprint) for item in items)
    return Account(fingerprint, outputs)


def encode_crypto_account(master_fingerprint: bytes, descriptors: Sequence[Descriptor]) -> bytes:
    """BCR-2020-015 ``crypto-account`` CBOR: a master fingerprint and account descriptors.

    Each entry is written as its script expression (``#6.404(#6.303(...))``) without the
    crypto-output (308) tag, as SeedSigner and the Keystone SDK write and read it; Sparrow
    and this module read either form. Keys are account xpubs with their origin (the
    receiving wallet appends the ``/0/*`` and ``/1/*`` children itself), so children are
    dropped here.
    """
    if len(master_fingerprint) != 4:
        raise RegistryError("a master fingerprint is 4 bytes")
    if not descriptors:
        raise RegistryError("crypto-account: no output descriptors")
    entries = []
    for descriptor in descriptors:
        descriptor = _check_descriptor(descriptor)
        bare = replace(descriptor, keys=tuple(_account_key(k) for k in descriptor.keys))
        entries.append(_write_v1_script(bare))
    return _dumps({1: int.from_bytes(master_fingerprint, "big"), 2: entries})


def _account_key(key: DescriptorKey) -> DescriptorKey:
    if key.xpub is None:
        raise RegistryError("a crypto-account entry holds extended keys only")
    return replace(key, steps=(), wildcard=False)


def encode_crypto_hdkey(key: DescriptorKey) -> bytes:
    """BCR-2020-007 ``crypto-hdkey`` CBOR for one account xpub with its origin (children
    dropped): the single-key export COLDCARD, Keystone and Sparrow read for a cosigner."""
    if not isinstance(key, DescriptorKey) or key.xpub is None:
        raise RegistryError("crypto-hdkey: an extended public key is needed")
    return _dumps(_write_key(_account_key(key), v2=False).value)


def decode_crypto_account(cbor: bytes, *, hardened_marker: str = "'") -> Account:
    """BCR-2020-015 ``crypto-account`` (read only)."""
    return _read_account(cbor, False, hardened_marker)


def decode_account_descriptor(cbor: bytes, *, hardened_marker: str = "'") -> Account:
    """BCR-2023-019 ``account-descriptor`` (read only)."""
    return _read_account(cbor, True, hardened_marker)


# -- a single key (crypto-hdkey / hdkey) ------------------------------------------------------


def decode_crypto_hdkey(cbor: bytes, *, hardened_marker: str = "'") -> DescriptorKey:
    """BCR-2020-007 ``crypto-hdkey`` (tag 303) or its successor ``hdkey`` (40303) as a UR of
    its own (read only): the single-xpub export some signers offer for a multisig
    cosigner. Public keys only; the result is a key expression such as
    ``[fingerprint/48'/0'/0'/2']xpub...``."""
    marker = _check_marker(hardened_marker)
    value = _maybe_tagged(_loads(cbor, MAX_DESCRIPTOR_CBOR, "hdkey"), TAG_HDKEY, "hdkey")
    return _read_hdkey(value, "hdkey", marker, None)


# -- the type table ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RegistryType:
    """One UR type: its CBOR tag, codec, and the other-version name for the same thing."""

    name: str
    tag: int | None
    decode: Callable[[bytes], Any]
    encode: Callable[[Any], bytes] | None
    equivalent: str | None = None
    deprecated: bool = False


REGISTRY: dict[str, RegistryType] = {
    t.name: t
    for t in (
        RegistryType("bytes", None, decode_bytes, encode_bytes),
        RegistryType("psbt", 40310, decode_psbt, encode_psbt, "crypto-psbt"),
        RegistryType("crypto-psbt", 310, decode_psbt, encode_psbt, "psbt", deprecated=True),
        RegistryType(
            "output-descriptor",
            40308,
            decode_output_descriptor,
            encode_output_descriptor,
            "crypto-output",
        ),
        RegistryType(
            "crypto-output",
            308,
            decode_crypto_output,
            encode_crypto_output,
            "output-descriptor",
            deprecated=True,
        ),
        RegistryType(
            "account-descriptor", 40311, decode_account_descriptor, None, "crypto-account"
        ),
        RegistryType("hdkey", 40303, decode_crypto_hdkey, None, "crypto-hdkey"),
        RegistryType(
            "crypto-hdkey", 303, decode_crypto_hdkey, encode_crypto_hdkey, "hdkey", deprecated=True
        ),
        RegistryType(
            "crypto-account",
            311,
            decode_crypto_account,
            None,
            "account-descriptor",
            deprecated=True,
        ),
    )
}


def lookup(ur_type: str) -> RegistryType:
    """The registry entry for a UR type name (case-insensitive)."""
    if not isinstance(ur_type, str):
        raise RegistryError(f"UR type must be text, got {type(ur_type).__name__}")
    entry = REGISTRY.get(ur_type.strip().lower())
    if entry is None:
        known = ", ".join(sorted(REGISTRY))
        raise RegistryError(f"UR type {ur_type[:40]!r} is not supported (supported: {known})")
    return entry


def decode(ur_type: str, cbor: bytes) -> Any:
    """Decode the CBOR body of a UR of ``ur_type``."""
    return lookup(ur_type).decode(cbor)


def encode(ur_type: str, value: Any) -> bytes:
    """The CBOR body of a UR of ``ur_type`` for ``value``."""
    entry = lookup(ur_type)
    if entry.encode is None:
        raise RegistryError(f"{entry.name} is read only in Coldstation")
    return entry.encode(value)
