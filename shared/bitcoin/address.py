"""Addresses and key encodings: networks, bech32/bech32m, base58check and WIF.

A custodian's worst address bug is paying to the right script on the wrong chain, or to a
script nobody can spend. So decoding is strict (BIP-173/BIP-350 checks in full, no
guessing at typos) and :func:`address_to_script` always takes the network the wallet is
on and refuses addresses of any other network, naming both in the error.

Testnet, testnet4 and signet share every prefix, so they accept each other's addresses;
regtest uses its own bech32 prefix ``bcrt`` but the testnet base58 version bytes.
"""

from __future__ import annotations

from enum import Enum
from typing import NamedTuple

from shared.bitcoin.encoding import hash256
from shared.bitcoin.script import (
    OutputType,
    classify,
    p2pkh_script,
    p2sh_script,
    witness_program,
    witness_program_script,
)

#: Order of the secp256k1 group; valid private keys are 1..N-1.
SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141

BECH32_MAX_LENGTH = 90
_BECH32_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_BECH32_VALUES = {c: i for i, c in enumerate(_BECH32_CHARSET)}
_BECH32_GENERATOR = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
_BASE58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_BASE58_VALUES = {c: i for i, c in enumerate(_BASE58_ALPHABET)}


class AddressError(ValueError):
    """An address or key string that does not decode, or belongs to another network."""


class Network(Enum):
    """Chain parameters; the value tuple is (label, hrp, p2pkh, p2sh, wif, xpub, xprv)."""

    MAINNET = ("mainnet", "bc", 0x00, 0x05, 0x80, 0x0488B21E, 0x0488ADE4)
    TESTNET = ("testnet", "tb", 0x6F, 0xC4, 0xEF, 0x043587CF, 0x04358394)
    SIGNET = ("signet", "tb", 0x6F, 0xC4, 0xEF, 0x043587CF, 0x04358394)
    REGTEST = ("regtest", "bcrt", 0x6F, 0xC4, 0xEF, 0x043587CF, 0x04358394)

    def __init__(
        self, label: str, hrp: str, p2pkh: int, p2sh: int, wif: int, xpub: int, xprv: int
    ) -> None:
        self.label = label
        self.hrp = hrp
        self.p2pkh_version = p2pkh
        self.p2sh_version = p2sh
        self.wif_version = wif
        self.xpub_version = xpub
        self.xprv_version = xprv

    @property
    def is_test(self) -> bool:
        """True for every network whose coins have no value."""
        return self is not Network.MAINNET

    @property
    def kind(self) -> Network:
        """MAINNET or TESTNET: the family sharing base58, WIF and BIP-32 prefixes."""
        return Network.TESTNET if self.is_test else Network.MAINNET

    def __str__(self) -> str:
        return self.label


_NETWORK_NAMES = {
    "main": Network.MAINNET,
    "mainnet": Network.MAINNET,
    "bitcoin": Network.MAINNET,
    "test": Network.TESTNET,
    "testnet": Network.TESTNET,
    "testnet3": Network.TESTNET,
    "testnet4": Network.TESTNET,
    "signet": Network.SIGNET,
    "regtest": Network.REGTEST,
}

#: Who uses a prefix, for error messages ("address is for testnet/signet, expected ...").
_HRP_OWNERS = {"bc": "mainnet", "tb": "testnet/signet", "bcrt": "regtest"}


def network_by_name(name: str) -> Network:
    """Network for a name as Bitcoin Core and wallets spell it ("main", "testnet4", ...)."""
    try:
        return _NETWORK_NAMES[name.strip().lower()]
    except KeyError:
        known = ", ".join(sorted(_NETWORK_NAMES))
        raise ValueError(f"unknown network {name!r} (known: {known})") from None


def _base58_owner(version: int) -> str | None:
    if version in (Network.MAINNET.p2pkh_version, Network.MAINNET.p2sh_version):
        return "mainnet"
    if version in (Network.TESTNET.p2pkh_version, Network.TESTNET.p2sh_version):
        return "testnet/signet/regtest"
    return None


# -- bech32 / bech32m (BIP-173, BIP-350) --------------------------------------------------


class Bech32Encoding(Enum):
    """Checksum variant; the value is the constant the polymod must equal."""

    BECH32 = 1
    BECH32M = 0x2BC830A3


def _bech32_polymod(values: list[int]) -> int:
    chk = 1
    for value in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ value
        for i, gen in enumerate(_BECH32_GENERATOR):
            if (top >> i) & 1:
                chk ^= gen
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _bech32_checksum(hrp: str, data: list[int], encoding: Bech32Encoding) -> list[int]:
    polymod = _bech32_polymod([*_hrp_expand(hrp), *data, 0, 0, 0, 0, 0, 0]) ^ encoding.value
    return [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]


def bech32_encode(hrp: str, data: list[int], encoding: Bech32Encoding) -> str:
    """Encode 5-bit ``data`` under ``hrp`` (lowercase output)."""
    if any(not 0 <= d < 32 for d in data):
        raise AddressError("bech32 data values must be 5-bit")
    checksum = _bech32_checksum(hrp, data, encoding)
    return hrp + "1" + "".join(_BECH32_CHARSET[d] for d in [*data, *checksum])


def _check_bech32_chars(text: str) -> None:
    if any(not 33 <= ord(c) <= 126 for c in text):
        raise AddressError("bech32 character out of range")
    if text.lower() != text and text.upper() != text:
        raise AddressError("bech32 string mixes upper and lower case")


def bech32_decode(
    text: str, max_length: int = BECH32_MAX_LENGTH
) -> tuple[str, list[int], Bech32Encoding]:
    """Decode a bech32 or bech32m string into (hrp, 5-bit data without checksum, encoding)."""
    _check_bech32_chars(text)
    if len(text) > max_length:
        raise AddressError(f"bech32 string too long ({len(text)} > {max_length} characters)")
    text = text.lower()
    pos = text.rfind("1")
    if pos < 0:
        raise AddressError("bech32 separator '1' missing")
    if pos == 0:
        raise AddressError("bech32 human-readable part is empty")
    if pos + 7 > len(text):
        raise AddressError("bech32 checksum too short")
    hrp = text[:pos]
    bad = [c for c in text[pos + 1 :] if c not in _BECH32_VALUES]
    if bad:
        raise AddressError(f"invalid bech32 data character {bad[0]!r}")
    data = [_BECH32_VALUES[c] for c in text[pos + 1 :]]
    const = _bech32_polymod(_hrp_expand(hrp) + data)
    for encoding in Bech32Encoding:
        if const == encoding.value:
            return hrp, data[:-6], encoding
    raise AddressError("bad bech32 checksum")


def convert_bits(data: bytes | list[int], from_bits: int, to_bits: int, pad: bool) -> list[int]:
    """Regroup bits (8->5 with padding to encode, 5->8 without padding to decode)."""
    acc = bits = 0
    out: list[int] = []
    max_value = (1 << to_bits) - 1
    max_acc = (1 << (from_bits + to_bits - 1)) - 1
    for value in data:
        if value < 0 or value >> from_bits:
            raise AddressError(f"value {value} does not fit in {from_bits} bits")
        acc = ((acc << from_bits) | value) & max_acc
        bits += from_bits
        while bits >= to_bits:
            bits -= to_bits
            out.append((acc >> bits) & max_value)
    if pad:
        if bits:
            out.append((acc << (to_bits - bits)) & max_value)
    elif bits >= from_bits:
        raise AddressError(f"bech32 padding of {bits} bits is more than {from_bits - 1}")
    elif (acc << (to_bits - bits)) & max_value:
        raise AddressError("bech32 padding bits are not zero")
    return out


def _check_witness_program(version: int, program: bytes) -> None:
    if not 0 <= version <= 16:
        raise AddressError(f"invalid witness version {version}")
    if not 2 <= len(program) <= 40:
        raise AddressError(f"invalid witness program length {len(program)} (must be 2..40)")
    if version == 0 and len(program) not in (20, 32):
        raise AddressError(f"invalid witness v0 program length {len(program)} (must be 20 or 32)")


def segwit_encode(hrp: str, version: int, program: bytes) -> str:
    """Segwit address: bech32 for version 0, bech32m for versions 1-16."""
    _check_witness_program(version, program)
    encoding = Bech32Encoding.BECH32 if version == 0 else Bech32Encoding.BECH32M
    return bech32_encode(hrp, [version, *convert_bits(program, 8, 5, True)], encoding)


def segwit_decode(address: str) -> tuple[str, int, bytes]:
    """Decode a segwit address into (hrp, witness version, program) with all BIP checks."""
    hrp, data, encoding = bech32_decode(address)
    if not data:
        raise AddressError("bech32 address has an empty data section")
    version = data[0]
    program = bytes(convert_bits(data[1:], 5, 8, False))
    _check_witness_program(version, program)
    expected = Bech32Encoding.BECH32 if version == 0 else Bech32Encoding.BECH32M
    if encoding is not expected:
        raise AddressError(
            f"witness v{version} address must use a {expected.name.lower()} checksum, "
            f"not {encoding.name.lower()}"
        )
    return hrp, version, program


# -- base58 / base58check -----------------------------------------------------------------


def b58encode(data: bytes) -> str:
    """Base58 (Bitcoin alphabet); leading zero bytes become leading '1's."""
    n = int.from_bytes(data, "big")
    chars: list[str] = []
    while n:
        n, rem = divmod(n, 58)
        chars.append(_BASE58_ALPHABET[rem])
    zeros = len(data) - len(data.lstrip(b"\0"))
    return "1" * zeros + "".join(reversed(chars))


def b58decode(text: str) -> bytes:
    n = 0
    for c in text:
        value = _BASE58_VALUES.get(c)
        if value is None:
            raise AddressError(f"invalid base58 character {c!r}")
        n = n * 58 + value
    zeros = len(text) - len(text.lstrip("1"))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return b"\0" * zeros + body


def b58check_encode(payload: bytes) -> str:
    return b58encode(payload + hash256(payload)[:4])


def b58check_decode(text: str) -> bytes:
    """Payload of a base58check string (checksum verified and removed)."""
    raw = b58decode(text)
    if len(raw) < 4:
        raise AddressError("base58check string too short")
    payload, checksum = raw[:-4], raw[-4:]
    if hash256(payload)[:4] != checksum:
        raise AddressError("bad base58 checksum")
    return payload


# -- addresses ----------------------------------------------------------------------------


def _looks_bech32(address: str) -> str | None:
    """The known HRP of ``address`` if it is shaped like a segwit address of any network."""
    lower = address.lower()
    pos = lower.rfind("1")
    hrp = lower[:pos] if pos > 0 else ""
    return hrp if hrp in _HRP_OWNERS else None


def _bech32_to_script(address: str, network: Network) -> bytes:
    hrp, version, program = segwit_decode(address)
    if hrp != network.hrp:
        raise AddressError(f"address is for {_HRP_OWNERS[hrp]}, expected {network.label}")
    return witness_program_script(version, program)


def _base58_to_script(address: str, network: Network) -> bytes:
    payload = b58check_decode(address)
    if len(payload) != 21:
        raise AddressError(f"base58 address payload is {len(payload)} bytes, expected 21")
    version, body = payload[0], payload[1:]
    if version == network.p2pkh_version:
        return p2pkh_script(body)
    if version == network.p2sh_version:
        return p2sh_script(body)
    owner = _base58_owner(version)
    if owner is None:
        raise AddressError(f"unknown base58 address version byte 0x{version:02x}")
    raise AddressError(f"address is for {owner}, expected {network.label}")


def _bech32_hrp(address: str) -> str | None:
    """The HRP when ``address`` is a well-formed bech32/bech32m string, else None."""
    try:
        return bech32_decode(address)[0]
    except AddressError:
        return None


def address_to_script(address: str, network: Network) -> bytes:
    """The scriptPubKey ``address`` pays to, refusing addresses of other networks."""
    address = address.strip()
    if not address:
        raise AddressError("empty address")
    if len(address) > BECH32_MAX_LENGTH:
        raise AddressError(f"address too long ({len(address)} characters)")
    if _looks_bech32(address) is not None:
        return _bech32_to_script(address, network)
    try:
        return _base58_to_script(address, network)
    except AddressError:
        hrp = _bech32_hrp(address)
        if hrp is not None:
            raise AddressError(f"unknown address prefix {hrp!r}") from None
        raise


def script_to_address(script_pubkey: bytes, network: Network) -> str | None:
    """Address for P2PKH, P2SH and witness programs; None when the script has none."""
    kind = classify(script_pubkey)
    if kind is OutputType.P2PKH:
        return b58check_encode(bytes([network.p2pkh_version]) + script_pubkey[3:23])
    if kind is OutputType.P2SH:
        return b58check_encode(bytes([network.p2sh_version]) + script_pubkey[2:22])
    program = witness_program(script_pubkey)
    if program is None:
        return None
    try:
        return segwit_encode(network.hrp, *program)
    except AddressError:  # e.g. a v0 program of 25 bytes: no address exists for it
        return None


# -- WIF private keys ---------------------------------------------------------------------


class WifKey(NamedTuple):
    """A decoded WIF key; ``network`` is MAINNET or TESTNET (all test networks share 0xef)."""

    secret: bytes
    compressed: bool
    network: Network


_WIF_KINDS = {n.wif_version: n for n in (Network.MAINNET, Network.TESTNET)}


def _check_secret(secret: bytes) -> None:
    if len(secret) != 32 or not 1 <= int.from_bytes(secret, "big") < SECP256K1_ORDER:
        raise AddressError("private key is not in 1..n-1")


def wif_to_private_key(wif: str) -> WifKey:
    """Decode a WIF private key into (32-byte secret, compressed flag, network kind)."""
    payload = b58check_decode(wif.strip())
    if not payload:
        raise AddressError("empty WIF payload")
    network = _WIF_KINDS.get(payload[0])
    if network is None:
        raise AddressError(f"unknown WIF version byte 0x{payload[0]:02x}")
    body = payload[1:]
    if len(body) == 33 and body[32] == 0x01:
        compressed = True
    elif len(body) == 32:
        compressed = False
    else:
        raise AddressError(f"WIF payload of {len(body)} bytes is neither 32 nor 32+0x01")
    _check_secret(body[:32])
    return WifKey(body[:32], compressed, network)


def private_key_to_wif(secret: bytes, network: Network, compressed: bool = True) -> str:
    _check_secret(secret)
    suffix = b"\x01" if compressed else b""
    return b58check_encode(bytes([network.wif_version]) + secret + suffix)
