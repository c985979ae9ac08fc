"""Signed checkpoints: where the journal was verified up to, and the station state there.

Re-reading and re-verifying the whole journal before every ceremony costs time in
proportion to its length (0.19 ms a record: 2 s at 10,000). A checkpoint lets the station
start from a state it already verified: it names the journal's seq, head hash and the
offset just after that record, the SHA-256 of the file's bytes before that offset, and the
SHA-256 of the folded :class:`shared.station.StationState`; the audit key signs all of it
inside the HSM (every 64 records, at the end of an activated ceremony). On open the station
checks the signature (with the audit key read from the signing token), checks that the
checkpoint's last frame is still in place byte for byte, and folds only the records after
it: the cost does not grow with the journal.

The checkpoint is a cache: anything wrong with it (missing, altered, signed by another key,
not matching the file) only makes the station verify the journal from the start, and a
checkpoint frame that changed, or a file shorter than the checkpoint, is itself reported as
journal damage. It never adds to what
the journal says, because it is the audit key's signature over a state the station folded
from verified records.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cbor2

from appliance.files import atomic_write
from appliance.journal_store import Start
from shared import canonical
from shared.bitcoin import ecdsa
from shared.station import StationError, StationState

CHECKPOINT_TYPE = "coldstation-checkpoint"
CHECKPOINT_FORMAT = 1
#: A year's station state is some 24 MB; anything near this bound is not a checkpoint.
MAX_CHECKPOINT_BYTES = 1 << 30


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used; the station verifies from the start instead."""


@dataclass(frozen=True)
class Checkpoint:
    """What the audit key signs: journal position, its last frame's digest, state digest."""

    appliance_id: str
    seq: int
    head: bytes
    offset: int
    last_offset: int  # where the frame of record ``seq`` starts
    last_sha256: bytes  # SHA-256 of that frame's bytes
    state_sha256: bytes

    def to_plain(self) -> dict[str, object]:
        return {
            "type": CHECKPOINT_TYPE,
            "format": CHECKPOINT_FORMAT,
            "appliance": self.appliance_id,
            "seq": self.seq,
            "head": self.head,
            "offset": self.offset,
            "last_offset": self.last_offset,
            "last_sha256": self.last_sha256,
            "state_sha256": self.state_sha256,
        }

    def digest(self) -> bytes:
        return canonical.digest(self.to_plain())


def write_checkpoint(
    path: Path, state: StationState, start: Start, sign: Callable[[bytes], bytes]
) -> Checkpoint:
    """Sign and store the state folded up to ``state.seq`` (``start``: where its frame is)."""
    if state.appliance_id is None or state.seq < 0:
        raise CheckpointError("nothing to checkpoint: the journal is empty")
    body = state.to_bytes()
    checkpoint = Checkpoint(
        state.appliance_id,
        state.seq,
        state.head,
        start.offset,
        start.last_offset,
        start.last_sha256,
        hashlib.sha256(body).digest(),
    )
    signature = sign(checkpoint.digest())
    atomic_write(
        path, cbor2.dumps({"checkpoint": checkpoint.to_plain(), "sig": signature, "state": body})
    )
    return checkpoint


def read_checkpoint(
    path: Path, audit_key: bytes, appliance_id: str
) -> tuple[Checkpoint, StationState]:
    """The verified checkpoint and its state; CheckpointError says why it cannot be used."""
    try:
        with path.open("rb") as file:  # the medium is untrusted: never read without a bound
            data = file.read(MAX_CHECKPOINT_BYTES + 1)
    except FileNotFoundError:
        raise CheckpointError(f"{path} does not exist") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: {exc}") from exc
    if len(data) > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(f"{path} is larger than {MAX_CHECKPOINT_BYTES} bytes")
    try:
        plain = cbor2.loads(data)
        fields = plain["checkpoint"]
        checkpoint = Checkpoint(
            fields["appliance"],
            fields["seq"],
            fields["head"],
            fields["offset"],
            fields["last_offset"],
            fields["last_sha256"],
            fields["state_sha256"],
        )
        signature, body = plain["sig"], plain["state"]
        if fields != checkpoint.to_plain() or not isinstance(body, bytes):
            raise CheckpointError("unexpected fields")
    except (cbor2.CBORDecodeError, KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path} is unreadable: {exc}") from exc
    if checkpoint.appliance_id != appliance_id:
        raise CheckpointError(f"{path} is for appliance {checkpoint.appliance_id!r}")
    try:
        digest = checkpoint.digest()
    except canonical.CanonicalError as exc:  # a float, a huge int...: nothing we signed
        raise CheckpointError(f"{path} is unreadable: {exc}") from exc
    if not isinstance(signature, bytes) or not ecdsa.verify(audit_key, signature, digest):
        raise CheckpointError(f"{path}: the audit key's signature does not verify")
    if hashlib.sha256(body).digest() != checkpoint.state_sha256:
        raise CheckpointError(f"{path}: the state does not match its signed digest")
    try:
        state = StationState.from_bytes(body)
    except StationError as exc:
        raise CheckpointError(f"{path}: {exc}") from exc
    if (state.seq, state.head, state.appliance_id) != (
        checkpoint.seq,
        checkpoint.head,
        appliance_id,
    ):
        raise CheckpointError(f"{path}: the state is not at the signed journal position")
    return checkpoint, state


def start_of(checkpoint: Checkpoint) -> Start:
    """Where the journal's unverified frames begin, per the checkpoint."""
    return Start(
        checkpoint.offset, checkpoint.seq + 1, checkpoint.last_offset, checkpoint.last_sha256
    )
