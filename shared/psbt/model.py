"""PSBT (BIP-174 v0, BIP-370 v2) as ordered, validated key-value maps.

Written by hand rather than taken from a library because the appliance must decode every
byte itself with code an auditor can read in one sitting. Every record is validated on
the way in by the field registry in :mod:`shared.psbt.fields`; typed views are computed
from the records, so there is one source of truth. Serialization is canonical, in Bitcoin
Core's field order, so equal PSBTs give equal bytes; unknown and proprietary records are
kept byte for byte.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from collections.abc import Set as AbstractSet
from typing import Any, Self

from shared.bitcoin.bip32 import KeyOrigin
from shared.bitcoin.encoding import (
    ByteReader,
    DecodeError,
    compact_size,
    hash160,
    hash256,
    with_length,
)
from shared.bitcoin.tx import OutPoint, Transaction, TxIn, TxOut
from shared.psbt import fields as f
from shared.psbt.errors import (
    PsbtDecodeError,
    PsbtError,
    PsbtFieldError,
    PsbtSizeError,
    PsbtStructureError,
)
from shared.psbt.fields import REGISTRY, FieldValueError, Scope

MAGIC = b"psbt\xff"
#: Refused before decoding. Far above any batch Coldstation builds (a 1,000-input PSBT with
#: full previous transactions is about 0.5 MB) and far below what would hurt the appliance.
MAX_PSBT_SIZE = 16 * 1024 * 1024

# Bitcoin Core's serialization order; types not listed (unknown) come last, by key.
_ORDER = {
    Scope.GLOBAL: [
        f.PSBT_GLOBAL_UNSIGNED_TX,
        f.PSBT_GLOBAL_XPUB,
        f.PSBT_GLOBAL_TX_VERSION,
        f.PSBT_GLOBAL_FALLBACK_LOCKTIME,
        f.PSBT_GLOBAL_INPUT_COUNT,
        f.PSBT_GLOBAL_OUTPUT_COUNT,
        f.PSBT_GLOBAL_TX_MODIFIABLE,
        f.PSBT_GLOBAL_VERSION,
        f.PSBT_GLOBAL_PROPRIETARY,
    ],
    Scope.INPUT: [
        f.PSBT_IN_NON_WITNESS_UTXO,
        f.PSBT_IN_WITNESS_UTXO,
        f.PSBT_IN_PARTIAL_SIG,
        f.PSBT_IN_SIGHASH_TYPE,
        f.PSBT_IN_REDEEM_SCRIPT,
        f.PSBT_IN_WITNESS_SCRIPT,
        f.PSBT_IN_BIP32_DERIVATION,
        f.PSBT_IN_RIPEMD160,
        f.PSBT_IN_SHA256,
        f.PSBT_IN_HASH160,
        f.PSBT_IN_HASH256,
        f.PSBT_IN_TAP_KEY_SIG,
        f.PSBT_IN_TAP_SCRIPT_SIG,
        f.PSBT_IN_TAP_LEAF_SCRIPT,
        f.PSBT_IN_TAP_BIP32_DERIVATION,
        f.PSBT_IN_TAP_INTERNAL_KEY,
        f.PSBT_IN_TAP_MERKLE_ROOT,
        f.PSBT_IN_MUSIG2_PARTICIPANT_PUBKEYS,
        f.PSBT_IN_MUSIG2_PUB_NONCE,
        f.PSBT_IN_MUSIG2_PARTIAL_SIG,
        f.PSBT_IN_FINAL_SCRIPTSIG,
        f.PSBT_IN_FINAL_SCRIPTWITNESS,
        f.PSBT_IN_PREVIOUS_TXID,
        f.PSBT_IN_OUTPUT_INDEX,
        f.PSBT_IN_SEQUENCE,
        f.PSBT_IN_REQUIRED_TIME_LOCKTIME,
        f.PSBT_IN_REQUIRED_HEIGHT_LOCKTIME,
        f.PSBT_IN_PROPRIETARY,
    ],
    Scope.OUTPUT: [
        f.PSBT_OUT_REDEEM_SCRIPT,
        f.PSBT_OUT_WITNESS_SCRIPT,
        f.PSBT_OUT_BIP32_DERIVATION,
        f.PSBT_OUT_AMOUNT,
        f.PSBT_OUT_SCRIPT,
        f.PSBT_OUT_PROPRIETARY,
        f.PSBT_OUT_TAP_INTERNAL_KEY,
        f.PSBT_OUT_TAP_TREE,
        f.PSBT_OUT_TAP_BIP32_DERIVATION,
        f.PSBT_OUT_MUSIG2_PARTICIPANT_PUBKEYS,
    ],
}
_RANK = {scope: {t: i for i, t in enumerate(order)} for scope, order in _ORDER.items()}
_NON_WITNESS_UTXO_KEY = bytes((f.PSBT_IN_NON_WITNESS_UTXO,))  # a one-byte key


def split_key(key: bytes) -> tuple[int, bytes]:
    """(key type, key data) of a raw record key; the type is a CompactSize."""
    if key and key[0] < 0xFD:  # every type defined today: one byte
        return key[0], key[1:]
    reader = ByteReader(key)
    key_type = reader.read_compact_size("key type")
    return key_type, reader.read(reader.remaining())


def make_key(key_type: int, keydata: bytes = b"") -> bytes:
    if 0 <= key_type < 0xFD:  # every type defined today: one byte, no CompactSize call
        return _TYPE_BYTE[key_type] + keydata
    return compact_size(key_type) + keydata


_TYPE_BYTE = [bytes((t,)) for t in range(0xFD)]


class PsbtMap:
    """One map (global, an input or an output): raw records plus their decoded values."""

    scope: Scope = Scope.GLOBAL
    # The scope's registry and serialization ranks, looked up once per class rather than
    # per record (hashing an Enum member is a Python-level call).
    _fields: dict[int, f.FieldSpec] = REGISTRY[Scope.GLOBAL]
    _rank: dict[int, int] = _RANK[Scope.GLOBAL]

    def __init__(self, where: str = "global") -> None:
        self.where = where
        self._records: dict[bytes, bytes] = {}
        self._decoded: dict[bytes, Any] = {}

    # -- records -----------------------------------------------------------------------

    def set_record(self, key: bytes, value: bytes) -> None:
        """Validate and store one record, replacing any record with the same key."""
        self._decoded[key] = self._decode(key, value)
        self._records[key] = value

    def set(self, key_type: int, value: bytes, keydata: bytes = b"") -> None:
        self.set_record(make_key(key_type, keydata), value)

    def delete(self, key_type: int, keydata: bytes = b"") -> None:
        key = make_key(key_type, keydata)
        self._records.pop(key, None)
        self._decoded.pop(key, None)

    def keep_only(self, key_types: AbstractSet[int]) -> None:
        """Drop every known field whose type is not in ``key_types`` (unknowns stay)."""
        for key in list(self._records):
            key_type, _ = split_key(key)
            if key_type in self._fields and key_type not in key_types:
                del self._records[key], self._decoded[key]

    def copy(self) -> Self:
        """An independent map with the same records, without decoding them again.

        The decoded values are shared: they are read-only views of the records (every
        change goes through :meth:`set_record`, which replaces both), so sharing them is
        as safe as sharing the record bytes. Copying a 1,450-input request this way costs
        a dictionary copy per map instead of a second parse of every previous transaction.
        """
        other = type(self)(self.where)
        other._records = dict(self._records)
        other._decoded = dict(self._decoded)
        return other

    def raw_records(self) -> dict[bytes, bytes]:
        return dict(self._records)

    def get(self, key_type: int, keydata: bytes = b"") -> Any:
        """Decoded value of one record, or None."""
        if not keydata and 0 <= key_type < 0xFD:  # what every typed view asks: one lookup
            return self._decoded.get(_TYPE_BYTE[key_type])
        return self._decoded.get(make_key(key_type, keydata))

    def entries(self, key_type: int) -> Iterator[tuple[bytes, Any]]:
        """(key data, decoded value) for every record of ``key_type``."""
        if 0 <= key_type < 0xFD:  # a one-byte type: the first byte of the key says it all
            for key, decoded in self._decoded.items():
                if key[0] == key_type:
                    yield key[1:], decoded
            return
        prefix = compact_size(key_type)
        for key, decoded in self._decoded.items():
            if key.startswith(prefix) and split_key(key)[0] == key_type:
                yield key[len(prefix) :], decoded

    def types(self) -> AbstractSet[int]:
        return {key[0] if key[0] < 0xFD else split_key(key)[0] for key in self._records}

    @property
    def proprietary(self) -> dict[bytes, bytes]:
        """Proprietary records, full key (with 0xFC) to value, byte for byte."""
        return {k: v for k, v in self._records.items() if split_key(k)[0] == f.PROPRIETARY}

    @property
    def unknown(self) -> dict[bytes, bytes]:
        known = self._fields
        return {k: v for k, v in self._records.items() if split_key(k)[0] not in known}

    def field_names(self) -> list[str]:
        return sorted({f.field_name(self.scope, t) for t in self.types()})

    # -- encoding ----------------------------------------------------------------------

    def _decode(self, key: bytes, value: bytes) -> Any:
        try:
            key_type, keydata = split_key(key)
        except DecodeError as exc:
            raise PsbtFieldError(self.where, "key", f"bad key type: {exc}") from exc
        spec = self._fields.get(key_type)
        if spec is None:
            return value
        if spec.key_len is not None and len(keydata) != spec.key_len:
            raise PsbtFieldError(
                self.where, spec.name, f"key must be {1 + spec.key_len} byte(s), got {len(key)}"
            )
        try:
            return spec.decode(keydata, value)
        except FieldValueError as exc:
            raise PsbtFieldError(self.where, spec.name, str(exc)) from exc

    def _sort_key(self, key: bytes) -> tuple[int, bytes, bytes]:
        key_type = key[0] if key[0] < 0xFD else split_key(key)[0]
        rank = self._rank.get(key_type, len(self._rank))
        secondary = b""
        if key_type == f.PSBT_IN_PARTIAL_SIG and self.scope is Scope.INPUT:
            secondary = hash160(key[1:])  # Core keys partial signatures by key id
        elif key_type == f.PSBT_GLOBAL_XPUB and self.scope is Scope.GLOBAL:
            secondary = self._decoded[key].to_psbt_bytes()
        return rank, secondary, key

    def serialize(self) -> bytes:
        records = self._records
        parts = []
        for key in sorted(records, key=self._sort_key):
            value = records[key]
            # with_length inlined: one-byte lengths are by far the most common
            parts.append(bytes((len(key),)) + key if len(key) < 0xFD else with_length(key))
            parts.append(bytes((len(value),)) + value if len(value) < 0xFD else with_length(value))
        parts.append(b"\x00")
        return b"".join(parts)

    def check_version(self, version: int) -> None:
        """Refuse fields that the PSBT version does not allow."""
        for key_type in self.types():
            spec = self._fields.get(key_type)
            if spec and spec.only_version is not None and spec.only_version != version:
                raise PsbtStructureError(
                    f"{self.where}: {spec.name} is not allowed in PSBT version {version}"
                )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PsbtMap) and self._records == other._records

    __hash__ = None  # type: ignore[assignment]


class PsbtInput(PsbtMap):
    scope = Scope.INPUT
    _fields = REGISTRY[Scope.INPUT]
    _rank = _RANK[Scope.INPUT]

    def set_record(self, key: bytes, value: bytes) -> None:
        """As :meth:`PsbtMap.set_record`; a full previous transaction is kept without its
        witness, as Bitcoin Core writes it (``TX_NO_WITNESS``): the witness proves nothing
        about the output being spent, and Core's combinepsbt/finalizepsbt give these bytes.

        A transaction read without a witness is kept as the bytes given: the parser refuses
        non-minimal CompactSizes and trailing bytes, so those bytes are exactly what
        re-serializing it would write (re-serializing them was about a tenth of the parse
        of a 1,000-input PSBT).
        """
        super().set_record(key, value)
        if key == _NON_WITNESS_UTXO_KEY and self._decoded[key].has_witness():
            self._records[key] = self._decoded[key].serialize(include_witness=False)

    def non_witness_utxo_txid(self) -> bytes | None:
        """Txid of the full previous transaction, hashed from the record (its bytes without
        witness), so it costs one hash and no re-serialization."""
        raw = self._records.get(_NON_WITNESS_UTXO_KEY)
        return None if raw is None else hash256(raw)

    @property
    def non_witness_utxo(self) -> Transaction | None:
        return self.get(f.PSBT_IN_NON_WITNESS_UTXO)

    @property
    def witness_utxo(self) -> TxOut | None:
        return self.get(f.PSBT_IN_WITNESS_UTXO)

    @property
    def partial_sigs(self) -> dict[bytes, bytes]:
        """Public key to signature (DER plus sighash byte)."""
        return dict(self.entries(f.PSBT_IN_PARTIAL_SIG))

    @property
    def sighash_type(self) -> int | None:
        return self.get(f.PSBT_IN_SIGHASH_TYPE)

    @property
    def redeem_script(self) -> bytes | None:
        return self.get(f.PSBT_IN_REDEEM_SCRIPT)

    @property
    def witness_script(self) -> bytes | None:
        return self.get(f.PSBT_IN_WITNESS_SCRIPT)

    @property
    def bip32_derivations(self) -> dict[bytes, KeyOrigin]:
        return dict(self.entries(f.PSBT_IN_BIP32_DERIVATION))

    @property
    def final_script_sig(self) -> bytes | None:
        return self.get(f.PSBT_IN_FINAL_SCRIPTSIG)

    @property
    def final_script_witness(self) -> list[bytes] | None:
        return self.get(f.PSBT_IN_FINAL_SCRIPTWITNESS)

    @property
    def is_finalized(self) -> bool:
        return self.final_script_sig is not None or self.final_script_witness is not None

    # PSBT v2 fields
    @property
    def previous_txid(self) -> bytes | None:
        return self.get(f.PSBT_IN_PREVIOUS_TXID)

    @property
    def output_index(self) -> int | None:
        return self.get(f.PSBT_IN_OUTPUT_INDEX)

    @property
    def sequence(self) -> int | None:
        return self.get(f.PSBT_IN_SEQUENCE)

    @property
    def required_time_locktime(self) -> int | None:
        return self.get(f.PSBT_IN_REQUIRED_TIME_LOCKTIME)

    @property
    def required_height_locktime(self) -> int | None:
        return self.get(f.PSBT_IN_REQUIRED_HEIGHT_LOCKTIME)

    def v2_prevout(self) -> OutPoint:
        """The outpoint a v2 input spends (BIP-370 requires both fields)."""
        txid, index = self.previous_txid, self.output_index
        if txid is None or index is None:
            raise PsbtStructureError(
                f"{self.where}: a v2 input needs PREVIOUS_TXID and OUTPUT_INDEX"
            )
        return OutPoint(txid, index)


class PsbtOutput(PsbtMap):
    scope = Scope.OUTPUT
    _fields = REGISTRY[Scope.OUTPUT]
    _rank = _RANK[Scope.OUTPUT]

    @property
    def redeem_script(self) -> bytes | None:
        return self.get(f.PSBT_OUT_REDEEM_SCRIPT)

    @property
    def witness_script(self) -> bytes | None:
        return self.get(f.PSBT_OUT_WITNESS_SCRIPT)

    @property
    def bip32_derivations(self) -> dict[bytes, KeyOrigin]:
        return dict(self.entries(f.PSBT_OUT_BIP32_DERIVATION))

    @property
    def amount(self) -> int | None:
        return self.get(f.PSBT_OUT_AMOUNT)

    @property
    def script(self) -> bytes | None:
        return self.get(f.PSBT_OUT_SCRIPT)

    def v2_txout(self) -> TxOut:
        """The output a v2 map describes (BIP-370 requires both fields)."""
        amount, script = self.amount, self.script
        if amount is None or script is None:
            raise PsbtStructureError(f"{self.where}: a v2 output needs AMOUNT and SCRIPT")
        return TxOut(amount, script)


class Psbt:
    """A whole PSBT. Build with :meth:`parse`, :meth:`from_text` or :meth:`from_unsigned_tx`."""

    def __init__(
        self, global_map: PsbtMap, inputs: list[PsbtInput], outputs: list[PsbtOutput]
    ) -> None:
        self.globals = global_map
        self.inputs = inputs
        self.outputs = outputs

    # -- construction ------------------------------------------------------------------

    @classmethod
    def from_unsigned_tx(cls, tx: Transaction) -> Psbt:
        """Creator role: a v0 PSBT around an unsigned transaction."""
        global_map = PsbtMap("global")
        global_map.set(f.PSBT_GLOBAL_UNSIGNED_TX, tx.serialize(include_witness=False))
        inputs = [PsbtInput(f"input {i}") for i in range(len(tx.inputs))]
        outputs = [PsbtOutput(f"output {i}") for i in range(len(tx.outputs))]
        return cls(global_map, inputs, outputs)

    @classmethod
    def parse(cls, data: bytes) -> Psbt:
        """Decode and validate binary PSBT bytes (v0 or v2)."""
        if len(data) > MAX_PSBT_SIZE:
            raise PsbtSizeError(f"PSBT is {len(data)} bytes; the limit is {MAX_PSBT_SIZE}")
        if not data.startswith(MAGIC):
            raise PsbtDecodeError("not a PSBT: missing magic bytes 'psbt\\xff'")
        reader = ByteReader(data[len(MAGIC) :])
        try:
            return cls._read(reader)
        except DecodeError as exc:
            raise PsbtDecodeError(f"truncated or malformed PSBT: {exc}") from exc

    @classmethod
    def from_text(cls, text: str | bytes) -> Psbt:
        """Decode binary, base64 or hex (surrounding whitespace ignored)."""
        if isinstance(text, bytes) and text.startswith(MAGIC):
            return cls.parse(text)
        if len(text) > MAX_PSBT_SIZE * 2:
            raise PsbtSizeError(f"PSBT text is {len(text)} characters; too large")
        raw = text.decode("ascii", "replace") if isinstance(text, bytes) else text
        compact = "".join(raw.split())
        if compact[:10].lower() == MAGIC.hex():
            try:
                return cls.parse(bytes.fromhex(compact))
            except ValueError as exc:
                if isinstance(exc, PsbtError):
                    raise
                raise PsbtDecodeError(f"invalid hex: {exc}") from exc
        try:
            decoded = base64.b64decode(compact, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise PsbtDecodeError("input is neither a binary PSBT, base64 nor hex") from exc
        return cls.parse(decoded)

    @classmethod
    def _read(cls, reader: ByteReader) -> Psbt:
        global_map = _read_map(reader, PsbtMap("global"))
        version = global_map.get(f.PSBT_GLOBAL_VERSION) or 0
        if version == 1:
            raise PsbtStructureError("there is no PSBT version 1")
        global_map.check_version(version)
        n_inputs, n_outputs = _global_counts(global_map, version)
        inputs = [
            _read_map(reader, PsbtInput(f"input {i}"), "input", n_inputs, i)
            for i in range(n_inputs)
        ]
        outputs = [
            _read_map(reader, PsbtOutput(f"output {i}"), "output", n_outputs, i)
            for i in range(n_outputs)
        ]
        if not reader.at_end():
            raise PsbtDecodeError(f"{reader.remaining()} bytes of extra data after the PSBT")
        psbt = cls(global_map, inputs, outputs)
        for m in (*inputs, *outputs):
            m.check_version(version)
        psbt._check_v2_required()
        psbt._check_utxos_match()
        return psbt

    # -- validation --------------------------------------------------------------------

    def _check_v2_required(self) -> None:
        if self.version != 2:
            return
        for inp in self.inputs:
            for key_type in (f.PSBT_IN_PREVIOUS_TXID, f.PSBT_IN_OUTPUT_INDEX):
                if inp.get(key_type) is None:
                    name = f.field_name(Scope.INPUT, key_type)
                    raise PsbtStructureError(f"{inp.where}: {name} is required in PSBT v2")
        for out in self.outputs:
            for key_type in (f.PSBT_OUT_AMOUNT, f.PSBT_OUT_SCRIPT):
                if out.get(key_type) is None:
                    name = f.field_name(Scope.OUTPUT, key_type)
                    raise PsbtStructureError(f"{out.where}: {name} is required in PSBT v2")

    def _check_utxos_match(self) -> None:
        for inp, prevout in zip(self.inputs, self.prevouts(), strict=True):
            utxo_tx = inp.non_witness_utxo
            if utxo_tx is None:
                continue
            if inp.non_witness_utxo_txid() != prevout.txid:
                raise PsbtStructureError(
                    f"{inp.where}: PSBT_IN_NON_WITNESS_UTXO has txid {utxo_tx.txid_hex}, "
                    f"but the input spends {prevout.txid_hex}"
                )
            if prevout.vout >= len(utxo_tx.outputs):
                raise PsbtStructureError(
                    f"{inp.where}: PSBT_IN_NON_WITNESS_UTXO has no output {prevout.vout}"
                )

    # -- views -------------------------------------------------------------------------

    @property
    def version(self) -> int:
        return self.globals.get(f.PSBT_GLOBAL_VERSION) or 0

    @property
    def xpubs(self) -> dict[bytes, KeyOrigin]:
        """Serialized 78-byte extended public keys to their key origins."""
        return dict(self.globals.entries(f.PSBT_GLOBAL_XPUB))

    def prevouts(self) -> list[OutPoint]:
        if self.version == 0:
            return [txin.prevout for txin in self.globals.get(f.PSBT_GLOBAL_UNSIGNED_TX).inputs]
        return [inp.v2_prevout() for inp in self.inputs]

    def prevout(self, index: int) -> OutPoint:
        """The outpoint input ``index`` spends, in constant time (``prevouts()[index]``
        builds the whole list: called once per input, that is quadratic in the inputs)."""
        if self.version == 0:
            return self.globals.get(f.PSBT_GLOBAL_UNSIGNED_TX).inputs[index].prevout
        return self.inputs[index].v2_prevout()

    @property
    def unsigned_tx(self) -> Transaction:
        """The transaction being signed (for v2, assembled from the per-map fields)."""
        if self.version == 0:
            tx: Transaction = self.globals.get(f.PSBT_GLOBAL_UNSIGNED_TX)
            return Transaction(
                tx.version,
                [TxIn(i.prevout, b"", i.sequence) for i in tx.inputs],
                [TxOut(o.value, o.script_pubkey) for o in tx.outputs],
                tx.locktime,
            )
        locktime = self.computed_locktime()
        if locktime is None:
            raise PsbtStructureError("inputs require incompatible locktime types")
        inputs = [
            TxIn(i.v2_prevout(), b"", 0xFFFFFFFF if i.sequence is None else i.sequence)
            for i in self.inputs
        ]
        outputs = [o.v2_txout() for o in self.outputs]
        return Transaction(self.globals.get(f.PSBT_GLOBAL_TX_VERSION), inputs, outputs, locktime)

    def computed_locktime(self) -> int | None:
        """BIP-370 locktime: height preferred when every constraint allows it; else None."""
        if self.version == 0:
            return self.globals.get(f.PSBT_GLOBAL_UNSIGNED_TX).locktime
        heights = [i.required_height_locktime for i in self.inputs]
        times = [i.required_time_locktime for i in self.inputs]
        constrained = [(h, t) for h, t in zip(heights, times, strict=True) if h or t]
        if not constrained:
            return self.globals.get(f.PSBT_GLOBAL_FALLBACK_LOCKTIME) or 0
        if all(h for h, _ in constrained):
            return max(h or 0 for h, _ in constrained)  # all set: `or 0` only for the type
        if all(t for _, t in constrained):
            return max(t or 0 for _, t in constrained)
        return None

    def input_utxo(self, index: int) -> TxOut | None:
        """The output an input spends, from the full previous transaction when present.

        Constant time (one outpoint, not the list of all), so callers may ask input by input.
        """
        inp = self.inputs[index]
        if inp.non_witness_utxo is not None:
            return inp.non_witness_utxo.outputs[self.prevout(index).vout]
        return inp.witness_utxo

    def input_utxos(self) -> list[TxOut | None]:
        """:meth:`input_utxo` of every input, in one linear pass."""
        prevouts = self.prevouts()
        utxos: list[TxOut | None] = []
        for index, inp in enumerate(self.inputs):
            full = inp.non_witness_utxo
            utxos.append(inp.witness_utxo if full is None else full.outputs[prevouts[index].vout])
        return utxos

    def fee(self) -> int | None:
        """Inputs minus outputs in satoshis, or None when an input's amount is unknown."""
        amounts = self.input_utxos()
        if any(utxo is None for utxo in amounts):
            return None
        total_in = sum(utxo.value for utxo in amounts if utxo is not None)
        return total_in - sum(out.value for out in self.unsigned_tx.outputs)

    # -- encoding ----------------------------------------------------------------------

    def serialize(self) -> bytes:
        maps: list[PsbtMap] = [self.globals, *self.inputs, *self.outputs]
        return MAGIC + b"".join(m.serialize() for m in maps)

    def to_base64(self) -> str:
        return base64.b64encode(self.serialize()).decode()

    def to_v0(self) -> Psbt:
        """The same PSBT written as version 0 (what Coldstation emits)."""
        if self.version == 0:
            return Psbt.parse(self.serialize())
        v0 = Psbt.from_unsigned_tx(self.unsigned_tx)
        for src_map, dst_map in zip(
            [self.globals, *self.inputs, *self.outputs],
            [v0.globals, *v0.inputs, *v0.outputs],
            strict=True,
        ):
            for key, value in src_map.raw_records().items():
                if _kept_in_v0(src_map.scope, split_key(key)[0]):
                    dst_map.set_record(key, value)
        return v0

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Psbt) and self.serialize() == other.serialize()

    __hash__ = None  # type: ignore[assignment]


def _kept_in_v0(scope: Scope, key_type: int) -> bool:
    """Fields a v2 PSBT keeps when written as v0: all but the v2-only ones and the version."""
    spec = REGISTRY[scope].get(key_type)
    if spec is None:
        return True
    is_version = scope is Scope.GLOBAL and key_type == f.PSBT_GLOBAL_VERSION
    return spec.only_version is None and not is_version


def _global_counts(global_map: PsbtMap, version: int) -> tuple[int, int]:
    if version == 0:
        tx = global_map.get(f.PSBT_GLOBAL_UNSIGNED_TX)
        if tx is None:
            raise PsbtStructureError("global: PSBT_GLOBAL_UNSIGNED_TX is required in PSBT v0")
        return len(tx.inputs), len(tx.outputs)
    for key_type in (
        f.PSBT_GLOBAL_TX_VERSION,
        f.PSBT_GLOBAL_INPUT_COUNT,
        f.PSBT_GLOBAL_OUTPUT_COUNT,
    ):
        if global_map.get(key_type) is None:
            name = f.field_name(Scope.GLOBAL, key_type)
            raise PsbtStructureError(f"global: {name} is required in PSBT v2")
    return global_map.get(f.PSBT_GLOBAL_INPUT_COUNT), global_map.get(f.PSBT_GLOBAL_OUTPUT_COUNT)


def _read_map(
    reader: ByteReader, target: PsbtMap, kind: str = "", expected: int = 0, index: int = 0
) -> Any:
    """Read records into ``target`` up to the 0x00 separator; duplicates are refused."""
    if kind and reader.at_end():
        raise PsbtStructureError(
            f"the unsigned transaction has {expected} {kind}s but the PSBT has only "
            f"{index} {kind} maps"
        )
    key_what, value_what = f"{target.where} key", f"{target.where} value"  # once per map
    records = target._records
    while True:
        if reader.at_end():
            raise PsbtDecodeError(f"{target.where}: separator missing at the end of the map")
        key = reader.read_var_bytes(key_what)
        if not key:
            return target
        value = reader.read_var_bytes(value_what)
        if key in records:
            key_type, _ = split_key(key)
            raise PsbtFieldError(
                target.where, f.field_name(target.scope, key_type), f"duplicate key {key.hex()}"
            )
        target.set_record(key, value)
