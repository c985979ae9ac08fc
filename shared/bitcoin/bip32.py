"""BIP-32 extended keys, derivation paths and key origins.

The appliance checks that every change output and every input key really derives from
the wallet's xpubs, so public derivation (CKDpub) must be exact and fast: a parent's
public-key point and fingerprint are computed once and cached on the key object, and a
child derived publicly inherits its point instead of re-parsing it.

Only ``xpub``/``tpub``/``xprv``/``tprv`` version bytes are accepted. SLIP-132 variants
(``ypub``, ``zpub``, ``Zpub``, ``upub``, ``vpub``, ...) are refused with an error naming
them: they smuggle a script type into the key, and in Coldstation the script type comes
only from the output descriptor, so a ``zpub`` must be converted to an ``xpub`` first.

Private extended keys never print themselves: ``str()``/``repr()`` of an xprv is
redacted, and the base58 text is only returned by the explicit :meth:`ExtendedKey.to_base58`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property

from coincurve import PrivateKey, PublicKey

from shared.bitcoin.address import (
    SECP256K1_ORDER,
    AddressError,
    Network,
    b58check_decode,
    b58check_encode,
)
from shared.bitcoin.ecdsa import is_valid_pubkey
from shared.bitcoin.encoding import hash160

HARDENED = 0x80000000
MAX_DEPTH = 255
_EXTKEY_SIZE = 78
_MAX_TEXT = 120  # 78 bytes + checksum is at most 112 base58 characters

_PUBLIC_VERSIONS = {
    Network.MAINNET.xpub_version: Network.MAINNET,
    Network.TESTNET.xpub_version: Network.TESTNET,
}
_PRIVATE_VERSIONS = {
    Network.MAINNET.xprv_version: Network.MAINNET,
    Network.TESTNET.xprv_version: Network.TESTNET,
}
#: SLIP-132 version bytes, recognised only to refuse them with a clear message.
_SLIP132_VERSIONS = {
    0x049D7CB2: "ypub",
    0x049D7878: "yprv",
    0x04B24746: "zpub",
    0x04B2430C: "zprv",
    0x0295B43F: "Ypub",
    0x0295B005: "Yprv",
    0x02AA7ED3: "Zpub",
    0x02AA7A99: "Zprv",
    0x044A5262: "upub",
    0x044A4E28: "uprv",
    0x045F1CF6: "vpub",
    0x045F18BC: "vprv",
    0x024289EF: "Upub",
    0x024285B5: "Uprv",
    0x02575483: "Vpub",
    0x02575048: "Vprv",
}
_ALL_VERSIONS = {**_PUBLIC_VERSIONS, **_PRIVATE_VERSIONS}
#: The public SLIP-132 versions and the network whose standard version replaces them.
_SLIP132_PUBLIC = {
    version: Network.MAINNET if name[0] in "yzYZ" else Network.TESTNET
    for version, name in _SLIP132_VERSIONS.items()
    if name.endswith("pub")
}
_PATH_ELEMENT = re.compile(r"([0-9]+)(['hH]?)")


class BIP32Error(ValueError):
    """An extended key, path or derivation step that is not valid."""


def fingerprint(pubkey: bytes) -> bytes:
    """BIP-32 key fingerprint: the first 4 bytes of HASH160 of the compressed pubkey."""
    return hash160(pubkey)[:4]


def _hmac512(chain_code: bytes, data: bytes) -> tuple[bytes, bytes]:
    digest = hmac.digest(chain_code, data, hashlib.sha512)
    return digest[:32], digest[32:]


def _valid_secret(secret: bytes) -> bool:
    return len(secret) == 32 and 0 < int.from_bytes(secret, "big") < SECP256K1_ORDER


@dataclass(frozen=True)
class ExtendedKey:
    """A BIP-32 node. ``key`` is a 33-byte compressed pubkey or a 32-byte private key."""

    version: int
    depth: int
    parent_fingerprint: bytes
    child_number: int
    chain_code: bytes
    key: bytes

    def __post_init__(self) -> None:
        if len(self.key) not in (32, 33) or len(self.chain_code) != 32:
            raise BIP32Error("extended key needs a 32-byte chain code and a 32/33-byte key")
        if len(self.parent_fingerprint) != 4 or not 0 <= self.depth <= MAX_DEPTH:
            raise BIP32Error("bad parent fingerprint length or depth")
        if not 0 <= self.child_number < 2**32:
            raise BIP32Error(f"child number {self.child_number} out of range")
        versions = _PRIVATE_VERSIONS if self.is_private else _PUBLIC_VERSIONS
        if self.version not in versions:
            kind = "private" if self.is_private else "public"
            raise BIP32Error(f"version 0x{self.version:08x} is not a {kind} key version")

    # -- properties -----------------------------------------------------------------------

    @property
    def is_private(self) -> bool:
        return len(self.key) == 32

    @property
    def network(self) -> Network:
        """MAINNET for xpub/xprv, TESTNET (standing for every test network) otherwise."""
        return _ALL_VERSIONS[self.version]

    @cached_property
    def point(self) -> PublicKey:
        """The public key as a coincurve point (computed once)."""
        if self.is_private:
            return PrivateKey(self.key).public_key
        return PublicKey(self.key)

    @cached_property
    def public_key(self) -> bytes:
        """33-byte compressed public key."""
        return self.key if not self.is_private else self.point.format(compressed=True)

    @cached_property
    def fingerprint(self) -> bytes:
        return fingerprint(self.public_key)

    # -- encoding -------------------------------------------------------------------------

    def serialize(self) -> bytes:
        """The 78-byte BIP-32 serialization."""
        key = b"\0" + self.key if self.is_private else self.key
        return (
            self.version.to_bytes(4, "big")
            + bytes([self.depth])
            + self.parent_fingerprint
            + self.child_number.to_bytes(4, "big")
            + self.chain_code
            + key
        )

    def to_base58(self) -> str:
        """The xpub/tpub/xprv/tprv string (the only way to get an xprv as text)."""
        return b58check_encode(self.serialize())

    @classmethod
    def parse(cls, text: str) -> ExtendedKey:
        """Parse an xpub/tpub/xprv/tprv string with every BIP-32 validity check."""
        text = text.strip()
        if len(text) > _MAX_TEXT:
            raise BIP32Error(f"extended key text too long ({len(text)} characters)")
        try:
            raw = b58check_decode(text)
        except AddressError as exc:
            raise BIP32Error(f"extended key does not decode: {exc}") from None
        return cls.from_bytes(raw)

    @classmethod
    def from_bytes(cls, raw: bytes) -> ExtendedKey:
        if len(raw) != _EXTKEY_SIZE:
            raise BIP32Error(f"extended key is {len(raw)} bytes, expected {_EXTKEY_SIZE}")
        version = int.from_bytes(raw[:4], "big")
        depth, parent, child = raw[4], raw[5:9], int.from_bytes(raw[9:13], "big")
        chain_code, key_data = raw[13:45], raw[45:]
        key = _check_key_data(version, key_data)
        if depth == 0 and parent != b"\0\0\0\0":
            raise BIP32Error("zero depth with non-zero parent fingerprint")
        if depth == 0 and child != 0:
            raise BIP32Error("zero depth with non-zero index")
        return cls(version, depth, parent, child, chain_code, key)

    def __str__(self) -> str:
        if self.is_private:
            return f"<private extended key {self.fingerprint.hex()}>"
        return self.to_base58()

    def __repr__(self) -> str:
        kind = "private" if self.is_private else "public"
        return (
            f"ExtendedKey({kind}, network={self.network.label}, depth={self.depth}, "
            f"fingerprint={self.fingerprint.hex()}, child={format_path([self.child_number], '')})"
        )

    # -- derivation -----------------------------------------------------------------------

    @classmethod
    def from_seed(cls, seed: bytes, network: Network = Network.MAINNET) -> ExtendedKey:
        """Master key from a 16..64 byte seed (HMAC-SHA512 keyed with "Bitcoin seed")."""
        if not 16 <= len(seed) <= 64:
            raise BIP32Error(f"seed must be 16..64 bytes, got {len(seed)}")
        secret, chain_code = _hmac512(b"Bitcoin seed", seed)
        if not _valid_secret(secret):
            raise BIP32Error("seed yields an invalid master key; use another seed")
        return cls(network.xprv_version, 0, b"\0\0\0\0", 0, chain_code, secret)

    def neuter(self) -> ExtendedKey:
        """The public extended key (xprv -> xpub); a public key is returned unchanged."""
        if not self.is_private:
            return self
        public_version = self.network.xpub_version
        out = ExtendedKey(
            public_version,
            self.depth,
            self.parent_fingerprint,
            self.child_number,
            self.chain_code,
            self.public_key,
        )
        out.__dict__["point"] = self.point
        return out

    def derive_child(self, index: int) -> ExtendedKey:
        return derive_child(self, index)

    def derive_path(self, path: str | Sequence[int]) -> ExtendedKey:
        return derive_path(self, path)


def parse_public_key_any(text: str) -> ExtendedKey:
    """An extended public key written as xpub/tpub or in a SLIP-132 form (ypub, zpub, Zpub,
    upub, vpub, Vpub...), returned as the standard key. COLDCARD and Sparrow export
    SLIP-132; its version only names a script type, which a descriptor states itself.
    Private keys are refused."""
    text = text.strip()
    if len(text) > _MAX_TEXT:
        raise BIP32Error(f"extended key text too long ({len(text)} characters)")
    try:
        raw = bytearray(b58check_decode(text))
    except AddressError as exc:
        raise BIP32Error(f"extended key does not decode: {exc}") from None
    network = _SLIP132_PUBLIC.get(int.from_bytes(raw[:4], "big"))
    if network is not None:
        raw[:4] = network.xpub_version.to_bytes(4, "big")
    key = ExtendedKey.from_bytes(bytes(raw))
    if key.is_private:
        raise BIP32Error("an extended private key is not accepted here")
    return key


def _check_key_data(version: int, key_data: bytes) -> bytes:
    """Validate the 33 key bytes against the version (BIP-32 test vector 5 cases)."""
    if version in _SLIP132_VERSIONS:
        name = _SLIP132_VERSIONS[version]
        raise BIP32Error(
            f"SLIP-132 {name} keys are not accepted; convert to xpub/tpub and let the "
            "descriptor state the script type"
        )
    if version in _PUBLIC_VERSIONS:
        if key_data[0] == 0:
            raise BIP32Error("pubkey version / prvkey mismatch")
        if key_data[0] not in (2, 3):
            raise BIP32Error(f"invalid pubkey prefix {key_data[0]:02x}")
        if not is_valid_pubkey(key_data):
            raise BIP32Error(f"invalid pubkey {key_data.hex()}")
        return key_data
    if version in _PRIVATE_VERSIONS:
        if key_data[0] in (2, 3):
            raise BIP32Error("prvkey version / pubkey mismatch")
        if key_data[0] != 0:
            raise BIP32Error(f"invalid prvkey prefix {key_data[0]:02x}")
        if not _valid_secret(key_data[1:]):
            raise BIP32Error("private key not in 1..n-1")
        return key_data[1:]
    raise BIP32Error(f"unknown extended key version 0x{version:08x}")


def _ckd_private(parent: ExtendedKey, index: int) -> ExtendedKey:
    if index >= HARDENED:
        data = b"\0" + parent.key + index.to_bytes(4, "big")
    else:
        data = parent.public_key + index.to_bytes(4, "big")
    tweak, chain_code = _hmac512(parent.chain_code, data)
    tweak_int = int.from_bytes(tweak, "big")
    child = (tweak_int + int.from_bytes(parent.key, "big")) % SECP256K1_ORDER
    if tweak_int >= SECP256K1_ORDER or child == 0:
        raise BIP32Error(f"child {index} is invalid (BIP-32: use the next index)")
    secret = child.to_bytes(32, "big")
    return ExtendedKey(
        parent.version, parent.depth + 1, parent.fingerprint, index, chain_code, secret
    )


def _ckd_public(parent: ExtendedKey, index: int) -> ExtendedKey:
    if index >= HARDENED:
        raise BIP32Error("cannot derive a hardened child from a public key")
    tweak, chain_code = _hmac512(parent.chain_code, parent.key + index.to_bytes(4, "big"))
    if int.from_bytes(tweak, "big") >= SECP256K1_ORDER:
        raise BIP32Error(f"child {index} is invalid (BIP-32: use the next index)")
    try:
        point = parent.point.add(tweak)
    except ValueError:
        raise BIP32Error(f"child {index} is invalid (BIP-32: use the next index)") from None
    child = ExtendedKey(
        parent.version,
        parent.depth + 1,
        parent.fingerprint,
        index,
        chain_code,
        point.format(compressed=True),
    )
    child.__dict__["point"] = point  # prime the cache: grandchildren need no re-parse
    return child


def derive_child(key: ExtendedKey, index: int) -> ExtendedKey:
    """CKDpriv for private keys (hardened allowed), CKDpub for public keys."""
    if not 0 <= index < 2**32:
        raise BIP32Error(f"child index {index} out of range 0..2^32-1")
    if key.depth >= MAX_DEPTH:
        raise BIP32Error("maximum derivation depth 255 reached")
    return _ckd_private(key, index) if key.is_private else _ckd_public(key, index)


def derive_path(key: ExtendedKey, path: str | Sequence[int]) -> ExtendedKey:
    """Derive along ``path`` ("m/48'/1'/0'/2'", "0/5" or a list of indexes)."""
    steps = parse_path(path) if isinstance(path, str) else path
    for index in steps:
        key = derive_child(key, index)
    return key


def from_seed(seed: bytes, network: Network = Network.MAINNET) -> ExtendedKey:
    return ExtendedKey.from_seed(seed, network)


# -- paths --------------------------------------------------------------------------------


def parse_path_element(text: str, markers: str = "'hH") -> int:
    """One path element: decimal below 2^31 with an optional hardened marker."""
    match = _PATH_ELEMENT.fullmatch(text)
    if match is None or (match.group(2) and match.group(2) not in markers):
        raise BIP32Error(f"invalid path element {text!r}")
    value = int(match.group(1))
    if value >= HARDENED:
        raise BIP32Error(f"path element {match.group(1)} is out of range (max 2147483647)")
    return value + HARDENED if match.group(2) else value


def parse_path(text: str) -> list[int]:
    """Parse "m/48'/1'/0'/2'" (or without "m/"); ', h and H all mark hardened steps."""
    text = text.strip()
    if text in ("m", ""):
        return []
    if text.startswith("m/"):
        text = text[2:]
    return [parse_path_element(part) for part in text.split("/")]


def format_path(path: Iterable[int], prefix: str = "m", hardened_marker: str = "'") -> str:
    """Format indexes as "m/48'/1'" (``prefix`` "" gives "48'/1'")."""
    parts = [f"{i - HARDENED}{hardened_marker}" if i >= HARDENED else str(i) for i in path]
    return "/".join([prefix, *parts] if prefix else parts)


# -- key origins --------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyOrigin:
    """Master fingerprint and the path from it, as in ``[d90c6a4f/0'/0'/4']`` and PSBTs."""

    fingerprint: bytes
    path: list[int]

    def __post_init__(self) -> None:
        if len(self.fingerprint) != 4:
            raise BIP32Error("key origin fingerprint must be 4 bytes")
        path = list(self.path)
        if path and (min(path) < 0 or max(path) >= 2**32):
            raise BIP32Error("key origin path element out of range")
        object.__setattr__(self, "path", path)

    def __hash__(self) -> int:
        return hash((self.fingerprint, tuple(self.path)))

    @classmethod
    def parse(cls, text: str, markers: str = "'hH") -> KeyOrigin:
        """Parse "d90c6a4f/0'/0'/4'" (surrounding brackets allowed)."""
        text = text.strip()
        if text.startswith("[") and text.endswith("]"):
            text = text[1:-1]
        fp_text, *parts = text.split("/")
        if not re.fullmatch(r"[0-9a-fA-F]{8}", fp_text):
            raise BIP32Error(f"fingerprint {fp_text!r} is not 8 hex characters")
        path = [parse_path_element(part, markers) for part in parts]
        return cls(bytes.fromhex(fp_text), path)

    def format(self, hardened_marker: str = "'") -> str:
        path = format_path(self.path, "", hardened_marker)
        return self.fingerprint.hex() + ("/" + path if path else "")

    def __str__(self) -> str:
        return self.format()

    def extend(self, steps: Iterable[int]) -> KeyOrigin:
        return KeyOrigin(self.fingerprint, [*self.path, *steps])

    def to_psbt_bytes(self) -> bytes:
        """PSBT BIP32_DERIVATION value: fingerprint then each index as uint32 LE."""
        return self.fingerprint + b"".join(i.to_bytes(4, "little") for i in self.path)

    @classmethod
    def from_psbt_bytes(cls, data: bytes) -> KeyOrigin:
        if len(data) < 4 or len(data) % 4:
            raise ValueError(f"key origin of {len(data)} bytes is not 4 + 4k bytes")
        path = struct.unpack_from(f"<{len(data) // 4 - 1}I", data, 4)  # uint32 LE each
        return cls(data[:4], list(path))
