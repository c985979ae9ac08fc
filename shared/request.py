"""Signing-request metadata and receipts, carried in PSBT proprietary fields (DESIGN 3).

The coordinator attaches one REQUEST record to the PSBT's global map: who asks, for which
batch, when it was made and when it expires, why, and whether it replaces transactions
already signed. The appliance decodes it strictly (unknown fields, bad types and
non-canonical CBOR are refused) and folds it into :func:`request_hash`, the digest officers
approve, so nothing in the metadata can change after approval without changing the hash.

The requester's passkey assertion over the request hash (``shared.requester``) rides in
an ASSERTION record: made after the hash, it cannot be inside it, and like a receipt it
changes nothing the officers approve.

After signing, each appliance adds a RECEIPT record: its signed journal entry for the
decision. Receipts are keyed by appliance id so the appliances of several cosigners can each
add theirs to the same PSBT without colliding.

Proprietary key layout (BIP-174): ``0xFC`` + compact-size length + ``b"coldstation"`` +
compact-size subtype + key data (empty for the request, the appliance id for a receipt).

Privacy (DESIGN 8): payees appear only as 32-byte hashes of the coordinator's payee
references; labels shown to officers come from the appliance's own address book.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from shared import canonical
from shared.bitcoin.encoding import ByteReader, DecodeError, compact_size
from shared.checks import FieldChecks
from shared.journal import Entry, JournalError
from shared.psbt.errors import PsbtError
from shared.psbt.fields import PSBT_GLOBAL_PROPRIETARY
from shared.psbt.model import Psbt
from shared.requester import Assertion, RequesterError
from shared.ur.bytewords import WORDS

PROPRIETARY_ID = b"coldstation"
SUBTYPE_REQUEST = 0x00
SUBTYPE_RECEIPT = 0x01
SUBTYPE_ASSERTION = 0x02
REQUEST_FORMAT = 1
REQUEST_HASH_TYPE = "coldstation-request"
KINDS = ("payment", "replacement")
NETWORKS = ("mainnet", "testnet", "signet", "regtest")

REQUEST_ID_SIZE = 16
MAX_TIME = 2**40
MAX_ID_TEXT = 64
MAX_PURPOSE = 200
MAX_REPLACES = 100
MAX_REFERENCES = 10_000
MAX_OUTPUT_INDEX = 100_000
MAX_REQUEST_BYTES = 1 << 20
MAX_TIP_HEIGHT = 499_999_999  # nLockTime values from 500,000,000 on are times, not heights

_REQUIRED = frozenset(
    {
        "format",
        "request_id",
        "batch_id",
        "requester",
        "created",
        "expiry",
        "purpose",
        "network",
        "kind",
        "references",
    }
)
#: ``tip_height``: the chain tip the coordinator built on, the bound for nLockTime.
_OPTIONAL = frozenset({"replaces", "tip_height"})


class RequestError(ValueError):
    """Request metadata or a receipt that is missing, malformed or not acceptable."""


_check = FieldChecks(RequestError)


def _replaces(value: object, kind: str) -> tuple[bytes, ...]:
    """Txids a replacement may conflict with: required for replacements, absent otherwise."""
    if not isinstance(value, list | tuple):
        raise RequestError("replaces must be a list of txids")
    items = tuple(_check.fixed_bytes(t, "replaced txid", 32) for t in value)
    if kind == "payment" and items:
        raise RequestError("a payment request cannot list replaced transactions")
    if kind == "replacement" and not 1 <= len(items) <= MAX_REPLACES:
        raise RequestError(f"a replacement must list 1..{MAX_REPLACES} replaced txids")
    if len(set(items)) != len(items):
        raise RequestError("replaces lists the same txid twice")
    return items


def _references(value: object) -> tuple[tuple[int, bytes], ...]:
    """Output index -> 32-byte hash of the payee reference, as sorted pairs."""
    pairs = list(value.items()) if isinstance(value, Mapping) else value
    if not isinstance(pairs, list | tuple):
        raise RequestError("references must map output indexes to 32-byte hashes")
    out: dict[int, bytes] = {}
    for pair in pairs:
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            raise RequestError("references must map output indexes to 32-byte hashes")
        index = _check.integer(pair[0], "reference output index", 0, MAX_OUTPUT_INDEX)
        if index in out:
            raise RequestError(f"references list output {index} twice")
        out[index] = _check.fixed_bytes(pair[1], f"reference of output {index}", 32)
        if len(out) > MAX_REFERENCES:
            raise RequestError(f"more than {MAX_REFERENCES} references")
    return tuple(sorted(out.items()))


# -- metadata -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestMetadata:
    """What the requester declares about a signing request; every field is approved.

    ``network`` is the chain the requester built the transaction for: a PSBT itself does
    not say, so without it a wrong-network request could not be told apart (REQUIREMENTS
    18). ``replaces`` holds txids in internal byte order (as ``Transaction.txid``).
    ``references`` may be given as a mapping; it is stored as sorted (index, hash) pairs.
    """

    request_id: bytes
    batch_id: str
    requester: str
    created: int
    expiry: int
    purpose: str
    network: str
    kind: str = "payment"
    replaces: tuple[bytes, ...] = ()
    references: tuple[tuple[int, bytes], ...] = ()
    tip_height: int | None = None

    def __post_init__(self) -> None:
        _check.fixed_bytes(self.request_id, "request_id", REQUEST_ID_SIZE)
        _check.text(self.batch_id, "batch_id", MAX_ID_TEXT)
        _check.text(self.requester, "requester", MAX_ID_TEXT)
        _check.integer(self.created, "created", 0, MAX_TIME)
        _check.integer(self.expiry, "expiry", 0, MAX_TIME)
        if self.expiry <= self.created:
            raise RequestError(f"expiry {self.expiry} is not after created {self.created}")
        _check.text(self.purpose, "purpose", MAX_PURPOSE)
        _check.choice(self.network, "network", NETWORKS)
        _check.choice(self.kind, "kind", KINDS)
        object.__setattr__(self, "replaces", _replaces(self.replaces, self.kind))
        object.__setattr__(self, "references", _references(self.references))
        if self.tip_height is not None:
            _check.integer(self.tip_height, "tip_height", 0, MAX_TIP_HEIGHT)

    def reference_for(self, output_index: int) -> bytes | None:
        return dict(self.references).get(output_index)

    def to_plain(self) -> dict[str, Any]:
        """The CBOR map carried in the PSBT; ``replaces`` only for replacements."""
        plain: dict[str, Any] = {
            "format": REQUEST_FORMAT,
            "request_id": self.request_id,
            "batch_id": self.batch_id,
            "requester": self.requester,
            "created": self.created,
            "expiry": self.expiry,
            "purpose": self.purpose,
            "network": self.network,
            "kind": self.kind,
            "references": dict(self.references),
        }
        if self.kind == "replacement":
            plain["replaces"] = list(self.replaces)
        if self.tip_height is not None:
            plain["tip_height"] = self.tip_height
        return plain

    @classmethod
    def from_plain(cls, plain: object) -> RequestMetadata:
        """Strict inverse of :meth:`to_plain`: exact fields, exact types."""
        data = _check.exact_keys(plain, "request metadata", _REQUIRED, _OPTIONAL)
        if data["format"] != REQUEST_FORMAT or isinstance(data["format"], bool):
            raise RequestError(f"unsupported request format {data['format']!r}")
        if not isinstance(data["references"], dict):
            raise RequestError("references must map output indexes to 32-byte hashes")
        kind = _check.choice(data["kind"], "kind", KINDS)
        if (kind == "replacement") != ("replaces" in data):
            raise RequestError("replaces is required for, and only for, replacement requests")
        return cls(
            request_id=data["request_id"],
            batch_id=data["batch_id"],
            requester=data["requester"],
            created=data["created"],
            expiry=data["expiry"],
            purpose=data["purpose"],
            network=data["network"],
            kind=kind,
            replaces=tuple(_replaces(data.get("replaces", []), kind)),
            references=_references(data["references"]),
            tip_height=data.get("tip_height"),
        )

    def to_bytes(self) -> bytes:
        return canonical.encode(self.to_plain())

    @classmethod
    def from_bytes(cls, data: bytes) -> RequestMetadata:
        """Decode canonical CBOR only: one request has exactly one encoding."""
        if not isinstance(data, bytes):
            raise RequestError("request metadata must be bytes")
        try:
            plain = canonical.decode(data, max_size=MAX_REQUEST_BYTES)
        except canonical.CanonicalError as exc:
            raise RequestError(f"request metadata: {exc}") from exc
        return cls.from_plain(plain)


# -- proprietary records ------------------------------------------------------------------


def proprietary_keydata(subtype: int, suffix: bytes = b"") -> bytes:
    """Key data after the 0xFC type byte: identifier, subtype, then ``suffix``."""
    return compact_size(len(PROPRIETARY_ID)) + PROPRIETARY_ID + compact_size(subtype) + suffix


def _records(psbt: Psbt, subtype: int) -> Iterator[tuple[bytes, bytes]]:
    """(key suffix, value) of each global Coldstation record of ``subtype``."""
    for keydata, value in psbt.globals.entries(PSBT_GLOBAL_PROPRIETARY):
        reader = ByteReader(keydata)
        try:
            if reader.read_var_bytes("identifier") != PROPRIETARY_ID:
                continue
            if reader.read_compact_size("subtype") != subtype:
                continue
        except DecodeError:
            continue  # another vendor's record; the PSBT parser already checked its shape
        yield reader.read(reader.remaining()), value


def _copy(psbt: Psbt) -> Psbt:
    """An independent copy, record by record (no re-parse, so no new checks can fire)."""
    return Psbt(
        psbt.globals.copy(),
        [m.copy() for m in psbt.inputs],
        [m.copy() for m in psbt.outputs],
    )


def read_request(psbt: Psbt) -> RequestMetadata:
    """The one request record of ``psbt``; refuses none, several, or a malformed one."""
    found = list(_records(psbt, SUBTYPE_REQUEST))
    if not found:
        raise RequestError("the PSBT carries no Coldstation request metadata")
    if len(found) > 1:
        raise RequestError(f"the PSBT carries {len(found)} request records; expected one")
    suffix, value = found[0]
    if suffix:
        raise RequestError("the request record's key has unexpected data after the subtype")
    return RequestMetadata.from_bytes(value)


def attach_request(psbt: Psbt, meta: RequestMetadata) -> Psbt:
    """A copy of ``psbt`` carrying ``meta``; refuses a PSBT that already has a request."""
    if not isinstance(meta, RequestMetadata):
        raise RequestError("meta must be RequestMetadata")
    if any(True for _ in _records(psbt, SUBTYPE_REQUEST)):
        raise RequestError("the PSBT already carries request metadata")
    result = _copy(psbt)
    keydata = proprietary_keydata(SUBTYPE_REQUEST)
    result.globals.set(PSBT_GLOBAL_PROPRIETARY, meta.to_bytes(), keydata=keydata)
    return result


def read_assertion(psbt: Psbt) -> Assertion | None:
    """The requester's assertion the PSBT carries, None when it carries none; refuses
    several or a malformed one."""
    found = list(_records(psbt, SUBTYPE_ASSERTION))
    if not found:
        return None
    if len(found) > 1:
        raise RequestError(f"the PSBT carries {len(found)} requester assertions; expected one")
    suffix, value = found[0]
    if suffix:
        raise RequestError("the assertion record's key has unexpected data after the subtype")
    try:
        return Assertion.from_bytes(value)
    except RequesterError as exc:
        raise RequestError(f"requester assertion: {exc}") from None


def attach_assertion(psbt: Psbt, assertion: Assertion) -> Psbt:
    """A copy of ``psbt`` carrying ``assertion`` in place of any it carried (a requester
    who signs again replaces their earlier assertion)."""
    result = _copy(psbt)
    keydata = proprietary_keydata(SUBTYPE_ASSERTION)
    result.globals.set(PSBT_GLOBAL_PROPRIETARY, assertion.to_bytes(), keydata=keydata)
    return result


def _entry(value: bytes, where: str) -> Entry:
    try:
        return Entry.from_bytes(value)
    except JournalError as exc:
        raise RequestError(f"{where}: not a journal entry: {exc}") from exc


def attach_receipt(psbt: Psbt, entry_bytes: bytes) -> Psbt:
    """A copy of ``psbt`` with this appliance's receipt (its signed journal entry).

    The key carries the appliance id taken from the entry itself, so a receipt cannot be
    filed under another appliance's name. One receipt per appliance.
    """
    entry = _entry(entry_bytes, "receipt")
    appliance = entry.record.appliance_id.encode()
    if any(suffix == appliance for suffix, _ in _records(psbt, SUBTYPE_RECEIPT)):
        raise RequestError(
            f"the PSBT already carries a receipt from appliance {entry.record.appliance_id!r}"
        )
    result = _copy(psbt)
    keydata = proprietary_keydata(SUBTYPE_RECEIPT, appliance)
    result.globals.set(PSBT_GLOBAL_PROPRIETARY, bytes(entry_bytes), keydata=keydata)
    return result


def read_receipts(psbt: Psbt) -> list[bytes]:
    """Every receipt's entry bytes, ordered by appliance id; each must name its own key.

    Signatures are not checked here: only the reader knows which audit keys it trusts.
    """
    receipts = []
    for suffix, value in _records(psbt, SUBTYPE_RECEIPT):
        entry = _entry(value, f"receipt {suffix[:MAX_ID_TEXT]!r}")
        if entry.record.appliance_id.encode() != suffix:
            raise RequestError(
                f"receipt filed under {suffix[:MAX_ID_TEXT]!r} is from appliance "
                f"{entry.record.appliance_id!r}"
            )
        receipts.append((suffix, value))
    return [value for _, value in sorted(receipts)]


# -- request hash -------------------------------------------------------------------------


def spent_outputs(psbt: Psbt) -> list[bytes]:
    """Serialized TxOut of every input's UTXO, from its full previous transaction.

    Only ``non_witness_utxo`` counts: a ``witness_utxo`` alone can lie about the amount.
    """
    try:
        prevouts = [txin.prevout for txin in psbt.unsigned_tx.inputs]
    except PsbtError as exc:
        raise RequestError(f"cannot read the unsigned transaction: {exc}") from exc
    if len(prevouts) != len(psbt.inputs):
        raise RequestError("the PSBT's input maps do not match the transaction's inputs")
    spent = []
    for index, (inp, prevout) in enumerate(zip(psbt.inputs, prevouts, strict=True)):
        prev = inp.non_witness_utxo
        if prev is None:
            raise RequestError(f"input {index} has no full previous transaction")
        if inp.non_witness_utxo_txid() != prevout.txid or prevout.vout >= len(prev.outputs):
            raise RequestError(f"input {index}: previous transaction does not hold {prevout}")
        spent.append(prev.outputs[prevout.vout].serialize())
    return spent


def request_hash(psbt: Psbt, meta: RequestMetadata) -> bytes:
    """What officers approve: the transaction, the coins it spends, and the request.

    Signatures, derivation hints, receipts and any other PSBT record are left out, so
    cosigners signing in any order do not change what was approved.
    """
    spent = spent_outputs(psbt)
    unsigned = psbt.unsigned_tx.serialize(include_witness=False)
    return canonical.digest(
        {
            "type": REQUEST_HASH_TYPE,
            "unsigned_tx": unsigned,
            "spent": spent,
            "request": meta.to_plain(),
        }
    )


def hash_words(digest: bytes) -> str:
    """The request hash as 32 Bytewords (one per byte, no checksum), four to a group.

    REQUIREMENTS 16 asks for PGP words as in IANA's ksrsigner; Coldstation uses the
    Bytewords list (BCR-2020-012) it already carries for UR, which is just as easy to read
    aloud. Groups are separated by " / " so officers can compare a group at a time.
    """
    if not isinstance(digest, bytes) or len(digest) != 32:
        raise RequestError("request hash must be 32 bytes")
    words = [WORDS[b] for b in digest]
    return " / ".join(" ".join(words[i : i + 4]) for i in range(0, 32, 4))
