"""Transactions: the BIP-144 wire format with and without witness data.

Hand-written because the appliance must parse every byte itself with a small, auditable
parser. Amounts are integers in satoshis; txids are kept in internal (little-endian) byte
order and shown reversed, as Bitcoin Core does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.bitcoin.encoding import ByteReader, DecodeError, compact_size, hash256, with_length

SEQUENCE_FINAL = 0xFFFFFFFF
SEQUENCE_RBF = 0xFFFFFFFD
#: nLockTime below this is a block height, from here on a unix time (Core's LOCKTIME_THRESHOLD).
LOCKTIME_THRESHOLD = 500_000_000
#: BIP-68: an nSequence with this bit set carries no relative lock.
SEQUENCE_LOCKTIME_DISABLE_FLAG = 1 << 31
#: Outputs and inputs need at least this many bytes each, so counts are bounded by size.
_MIN_INPUT_SIZE = 41
_MIN_OUTPUT_SIZE = 9


@dataclass(frozen=True, slots=True)
class OutPoint:
    txid: bytes  # 32 bytes, internal byte order
    vout: int

    @classmethod
    def from_hex(cls, txid_hex: str, vout: int) -> OutPoint:
        """Build from a txid as displayed (big-endian hex)."""
        return cls(bytes.fromhex(txid_hex)[::-1], vout)

    @property
    def txid_hex(self) -> str:
        return self.txid[::-1].hex()

    def serialize(self) -> bytes:
        return self.txid + self.vout.to_bytes(4, "little")

    def __str__(self) -> str:
        return f"{self.txid_hex}:{self.vout}"


@dataclass(slots=True)
class TxIn:
    prevout: OutPoint
    script_sig: bytes = b""
    sequence: int = SEQUENCE_FINAL
    witness: list[bytes] = field(default_factory=list)

    def serialize(self) -> bytes:
        return (
            self.prevout.serialize()
            + with_length(self.script_sig)
            + self.sequence.to_bytes(4, "little")
        )


@dataclass(slots=True)
class TxOut:
    value: int
    script_pubkey: bytes

    def serialize(self) -> bytes:
        return self.value.to_bytes(8, "little", signed=True) + with_length(self.script_pubkey)

    @classmethod
    def parse(cls, data: bytes) -> TxOut:
        """Parse one serialized output (as in a PSBT ``WITNESS_UTXO`` value), all bytes used."""
        reader = ByteReader(data)
        out = read_txout(reader)
        if not reader.at_end():
            raise DecodeError("trailing bytes after transaction output")
        return out


@dataclass(slots=True)
class Transaction:
    version: int = 2
    inputs: list[TxIn] = field(default_factory=list)
    outputs: list[TxOut] = field(default_factory=list)
    locktime: int = 0

    # -- serialization -------------------------------------------------------------------

    def has_witness(self) -> bool:
        return any(txin.witness for txin in self.inputs)

    def serialize(self, include_witness: bool = True) -> bytes:
        """BIP-144 bytes (legacy bytes when ``include_witness`` is false or no input has a
        witness). Inputs and outputs are written inline, field by field, exactly as
        :meth:`TxIn.serialize` and :meth:`TxOut.serialize` write them: every txid (of the
        spend and of each previous transaction in a PSBT) is a hash of these bytes, so
        this runs thousands of times per large PSBT."""
        with_wit = include_witness and self.has_witness()
        parts = [self.version.to_bytes(4, "little")]
        if with_wit:
            parts.append(b"\x00\x01")
        parts.append(compact_size(len(self.inputs)))
        for txin in self.inputs:
            script = txin.script_sig
            parts += (
                txin.prevout.txid,
                txin.prevout.vout.to_bytes(4, "little"),
                compact_size(len(script)),
                script,
                txin.sequence.to_bytes(4, "little"),
            )
        parts.append(compact_size(len(self.outputs)))
        for txout in self.outputs:
            script = txout.script_pubkey
            parts += (
                txout.value.to_bytes(8, "little", signed=True),
                compact_size(len(script)),
                script,
            )
        if with_wit:
            for txin in self.inputs:
                parts.append(compact_size(len(txin.witness)))
                parts.extend(with_length(item) for item in txin.witness)
        parts.append(self.locktime.to_bytes(4, "little"))
        return b"".join(parts)

    @classmethod
    def parse(cls, data: bytes, allow_witness: bool = True) -> Transaction:
        """Parse a whole serialized transaction; trailing bytes are an error."""
        reader = ByteReader(data)
        tx = read_transaction(reader, allow_witness)
        if not reader.at_end():
            raise DecodeError(f"{reader.remaining()} trailing bytes after transaction")
        return tx

    # -- identity and size ---------------------------------------------------------------

    @property
    def txid(self) -> bytes:
        """Txid in internal byte order."""
        return hash256(self.serialize(include_witness=False))

    @property
    def txid_hex(self) -> str:
        return self.txid[::-1].hex()

    @property
    def wtxid_hex(self) -> str:
        return hash256(self.serialize())[::-1].hex()

    def weight(self) -> int:
        base = len(self.serialize(include_witness=False))
        return base * 3 + len(self.serialize())

    def vsize(self) -> int:
        return (self.weight() + 3) // 4


def read_txout(reader: ByteReader) -> TxOut:
    value = reader.read_int(8, "output amount")
    script_pubkey = reader.read_var_bytes("output script")
    return TxOut(value, script_pubkey)


def read_transaction(reader: ByteReader, allow_witness: bool = True) -> Transaction:
    """Read one transaction from ``reader`` (BIP-144 segwit serialization when flagged)."""
    version = reader.read_uint(4, "transaction version")
    n_inputs = reader.read_compact_size("input count")
    has_witness = False
    if n_inputs == 0 and allow_witness:
        flag = reader.read(1, "segwit flag")[0]
        if flag != 1:
            raise DecodeError(f"unknown segwit flag {flag:#04x} (expected 0x01)")
        has_witness = True
        n_inputs = reader.read_compact_size("input count")
    if n_inputs * _MIN_INPUT_SIZE > reader.remaining():
        raise DecodeError(f"input count {n_inputs} exceeds the bytes present")
    inputs = [
        TxIn(
            OutPoint(reader.read(32, "input txid"), reader.read_uint(4, "input vout")),
            reader.read_var_bytes("input scriptSig"),
            reader.read_uint(4, "input sequence"),
        )
        for _ in range(n_inputs)
    ]
    n_outputs = reader.read_compact_size("output count")
    if n_outputs * _MIN_OUTPUT_SIZE > reader.remaining():
        raise DecodeError(f"output count {n_outputs} exceeds the bytes present")
    outputs = [read_txout(reader) for _ in range(n_outputs)]
    if has_witness:
        for txin in inputs:
            n_items = reader.read_compact_size("witness item count")
            if n_items > reader.remaining():
                raise DecodeError(f"witness item count {n_items} exceeds the bytes present")
            txin.witness = [reader.read_var_bytes("witness item") for _ in range(n_items)]
        if not any(txin.witness for txin in inputs):
            raise DecodeError("segwit flag set but every witness is empty (superfluous witness)")
    locktime = reader.read_uint(4, "locktime")
    return Transaction(version, inputs, outputs, locktime)
