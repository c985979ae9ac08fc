"""Scripts: pushes, the standard output templates, and bare multisig scripts.

Only what custody needs: recognise every standard output type so the appliance can show
(and the policy can judge) where money goes, and build/parse the ``multi``/``sortedmulti``
witness scripts our wallets use.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from shared.bitcoin.encoding import hash160, sha256

OP_0 = 0x00
OP_PUSHDATA1 = 0x4C
OP_PUSHDATA2 = 0x4D
OP_PUSHDATA4 = 0x4E
OP_1NEGATE = 0x4F
OP_1 = 0x51
OP_16 = 0x60
OP_RETURN = 0x6A
OP_DUP = 0x76
OP_EQUAL = 0x87
OP_EQUALVERIFY = 0x88
OP_HASH160 = 0xA9
OP_CHECKSIG = 0xAC
OP_CHECKMULTISIG = 0xAE

#: Bitcoin Core's limit on keys in a CHECKMULTISIG (and in ``multi()`` under P2WSH).
MAX_MULTISIG_KEYS = 20


class ScriptError(ValueError):
    """A script that does not parse or does not match the template asked for."""


class OutputType(Enum):
    P2PKH = "p2pkh"
    P2SH = "p2sh"
    P2WPKH = "p2wpkh"
    P2WSH = "p2wsh"
    P2TR = "p2tr"
    WITNESS_UNKNOWN = "witness_unknown"
    MULTISIG = "multisig"  # bare multisig
    NULL_DATA = "op_return"
    NONSTANDARD = "nonstandard"


def push_data(data: bytes) -> bytes:
    """Minimal push of ``data`` (as Bitcoin Core's ``CScript() << data``)."""
    n = len(data)
    if n == 0:
        return bytes([OP_0])
    if n == 1 and 1 <= data[0] <= 16:
        return bytes([OP_1 + data[0] - 1])
    if n == 1 and data[0] == 0x81:
        return bytes([OP_1NEGATE])
    if n < OP_PUSHDATA1:
        return bytes([n]) + data
    if n <= 0xFF:
        return bytes([OP_PUSHDATA1, n]) + data
    if n <= 0xFFFF:
        return bytes([OP_PUSHDATA2]) + n.to_bytes(2, "little") + data
    return bytes([OP_PUSHDATA4]) + n.to_bytes(4, "little") + data


def push_int(n: int) -> bytes:
    """Push a small integer 0..16 as its opcode."""
    if not 0 <= n <= 16:
        raise ScriptError(f"small integer {n} out of range 0..16")
    return bytes([OP_0 if n == 0 else OP_1 + n - 1])


def push_number(n: int) -> bytes:
    """Push a non-negative count as Bitcoin Core's ``CScript() << n``: OP_N up to 16, else a
    minimal little-endian number push (multisig with 17-20 keys)."""
    if n <= 16:
        return push_int(n)
    return push_data(n.to_bytes((n.bit_length() + 8) // 8, "little"))


def iter_ops(script: bytes) -> list[tuple[int, bytes | None]]:
    """Decode a script into (opcode, pushed data or None); refuses truncated pushes."""
    ops: list[tuple[int, bytes | None]] = []
    i = 0
    while i < len(script):
        op = script[i]
        i += 1
        if op > OP_PUSHDATA4 or op == OP_0:
            ops.append((op, b"" if op == OP_0 else None))
            continue
        if op < OP_PUSHDATA1:
            size = op
        else:
            width = {OP_PUSHDATA1: 1, OP_PUSHDATA2: 2, OP_PUSHDATA4: 4}[op]
            if i + width > len(script):
                raise ScriptError("truncated push length")
            size = int.from_bytes(script[i : i + width], "little")
            i += width
        if i + size > len(script):
            raise ScriptError("push past the end of the script")
        ops.append((op, script[i : i + size]))
        i += size
    return ops


def small_int(op: int) -> int | None:
    """Value of OP_0/OP_1..OP_16, else None."""
    if op == OP_0:
        return 0
    if OP_1 <= op <= OP_16:
        return op - OP_1 + 1
    return None


# -- output templates ---------------------------------------------------------------------


def p2pkh_script(pubkey_hash: bytes) -> bytes:
    return bytes([OP_DUP, OP_HASH160, 20]) + pubkey_hash + bytes([OP_EQUALVERIFY, OP_CHECKSIG])


def p2sh_script(script_hash: bytes) -> bytes:
    return bytes([OP_HASH160, 20]) + script_hash + bytes([OP_EQUAL])


def witness_program_script(version: int, program: bytes) -> bytes:
    return push_int(version) + bytes([len(program)]) + program


def p2wpkh_script(pubkey: bytes) -> bytes:
    return witness_program_script(0, hash160(pubkey))


def p2wsh_script(witness_script: bytes) -> bytes:
    return witness_program_script(0, sha256(witness_script))


def p2sh_wrap(redeem_script: bytes) -> bytes:
    return p2sh_script(hash160(redeem_script))


def witness_program(script_pubkey: bytes) -> tuple[int, bytes] | None:
    """(version, program) when ``script_pubkey`` is a BIP-141 witness program."""
    n = len(script_pubkey)
    if not 4 <= n <= 42:
        return None
    version = small_int(script_pubkey[0])
    if version is None or script_pubkey[1] != n - 2:
        return None
    return version, script_pubkey[2:]


@dataclass(frozen=True, slots=True)
class Multisig:
    threshold: int
    pubkeys: tuple[bytes, ...]


def multisig_script(threshold: int, pubkeys: list[bytes] | tuple[bytes, ...]) -> bytes:
    if not 1 <= threshold <= len(pubkeys) <= MAX_MULTISIG_KEYS:
        raise ScriptError(f"invalid multisig {threshold}-of-{len(pubkeys)}")
    body = b"".join(push_data(pk) for pk in pubkeys)
    return push_number(threshold) + body + push_number(len(pubkeys)) + bytes([OP_CHECKMULTISIG])


def parse_multisig(script: bytes) -> Multisig | None:
    """Recognise ``<m> <pk>... <n> CHECKMULTISIG`` with compressed or uncompressed keys."""
    try:
        ops = iter_ops(script)
    except ScriptError:
        return None
    if len(ops) < 4 or ops[-1][0] != OP_CHECKMULTISIG:
        return None
    m, n = _pushed_count(ops[0]), _pushed_count(ops[-2])
    pushed = [data for _, data in ops[1:-2]]
    keys = tuple(data for data in pushed if data is not None and len(data) in (33, 65))
    if m is None or n is None or not 1 <= m <= n == len(pushed) == len(keys):
        return None  # a wrong count, or a pushed item that is not a public key
    if multisig_script(m, keys) != script:  # non-minimal pushes are not our template
        return None
    return Multisig(m, keys)


def _pushed_count(op: tuple[int, bytes | None]) -> int | None:
    """A count pushed by :func:`push_number` (exact form checked by the caller's rebuild)."""
    opcode, data = op
    if data is not None and len(data) == 1 and opcode == 1:
        return data[0]
    return small_int(opcode)


def classify(script_pubkey: bytes) -> OutputType:
    """Name the standard type of an output script."""
    s = script_pubkey
    if (
        len(s) == 25
        and s[:3] == bytes([OP_DUP, OP_HASH160, 20])
        and s[23:] == bytes([OP_EQUALVERIFY, OP_CHECKSIG])
    ):
        return OutputType.P2PKH
    if len(s) == 23 and s[:2] == bytes([OP_HASH160, 20]) and s[22] == OP_EQUAL:
        return OutputType.P2SH
    if s[:1] == bytes([OP_RETURN]):
        return OutputType.NULL_DATA
    program = witness_program(s)
    if program is not None:
        version, prog = program
        if version == 0 and len(prog) == 20:
            return OutputType.P2WPKH
        if version == 0 and len(prog) == 32:
            return OutputType.P2WSH
        if version == 1 and len(prog) == 32:
            return OutputType.P2TR
        return OutputType.WITNESS_UNKNOWN
    if parse_multisig(s) is not None:
        return OutputType.MULTISIG
    return OutputType.NONSTANDARD
