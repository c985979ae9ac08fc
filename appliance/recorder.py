"""The station's journal as the ceremonies use it: verified before use, folded into state,
appended only under the audit key, anchored in the signing token.

The format and the chain rules live in :mod:`shared.journal` (the auditor replays with the
same code), the state fold in :mod:`shared.station`, the bytes in
:mod:`appliance.journal_store`, and the signed checkpoint in :mod:`appliance.checkpoint`.
This is the one place that joins them, so no ceremony can read state or write a record any
other way:

- **open** (:meth:`Recorder.open`): start from the signed checkpoint when it verifies (else
  from the genesis record), check that its last frame is still in place, then verify and fold every
  record after it. Anything that fails is a *problem*: the station does not sign, review or
  run ceremonies until an administrators' recovery ceremony deals with it.
- **record**: refuse a clock behind the journal; chain, sign inside the HSM, check the
  signature, append with fsync, fold, then move the signing token's anchor to the new head.
- **checkpoint**: at the end of each activated ceremony the state is signed again.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from appliance.checkpoint import (
    CheckpointError,
    read_checkpoint,
    start_of,
    write_checkpoint,
)
from appliance.journal_store import JournalStore, JournalStoreError, RecoveryReport
from appliance.keystore import Keystore
from appliance.token_objects import Anchor, write_anchor
from shared import canonical
from shared.bitcoin.tx import OutPoint
from shared.journal import Entry, JournalError, Record, seal, verify_journal
from shared.station import StationError, StationState, transcript_outpoints


class MissingTranscriptError(StationError):
    """A verified approval whose transcript (holding its inputs) is missing or altered."""


#: Records after the last checkpoint before a ceremony writes a new one.
CHECKPOINT_EVERY = 64
#: ... or signed inputs: an open folds each approval after the checkpoint from its
#: transcript, so a few ceremonies at Core's standard maximum (some 1,450 inputs each) would
#: cost every later open more than writing the checkpoint once does.
CHECKPOINT_INPUTS = 1_000


class ClockError(RuntimeError):
    """The station clock is behind the journal: time-based rules cannot be trusted."""


class Recorder:
    """An open journal and the state folded from it (see the module docstring)."""

    def __init__(
        self,
        store: JournalStore,
        keystore: Keystore,
        appliance_id: str,
        state: StationState,
        report: RecoveryReport,
        problems: list[str],
        checkpoint_path: Path,
        notes: list[str],
    ) -> None:
        self.store = store
        self.keystore = keystore
        self.appliance_id = appliance_id
        self.state = state
        self.report = report
        self.problems = problems
        self.notes = notes
        self.checkpoint_path = checkpoint_path
        self.checkpoint_seq = state.seq  # where the checkpoint this open started from is
        self.inputs_since_checkpoint = 0  # approved inputs folded from transcripts since

    # -- opening ----------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        journal_path: Path,
        checkpoint_path: Path,
        keystore: Keystore,
        appliance_id: str,
        audit_key: bytes | None,
        read_only: bool = False,
    ) -> Recorder:
        """Open and verify; problems are collected, never raised (status must still work).
        ``read_only``: beside the process that holds the journal, which is never written
        (see :meth:`JournalStore.open_read_only`)."""
        notes: list[str] = []
        state, start = StationState(), None
        if audit_key is not None:
            try:
                checkpoint, state = read_checkpoint(checkpoint_path, audit_key, appliance_id)
                start = start_of(checkpoint)
            except CheckpointError as exc:
                if checkpoint_path.exists():
                    notes.append(f"checkpoint not used ({exc}): verified from the first record")
                state = StationState()
        opener = JournalStore.open_read_only if read_only else JournalStore.open
        store, report = opener(journal_path, start)
        if store.incomplete_tail:
            notes.append(
                f"journal {journal_path}: its last record is still being written by the "
                "process that holds it; shown up to the one before"
            )
        problems: list[str] = []
        claimed = None  # the journal length a signed checkpoint vouches for, when it lost some
        if report.prefix_changed and start is not None:
            if store.end_offset < start.offset and report.damage is None:
                claimed = start.index - 1
                problems.append(
                    f"journal {journal_path} ends before its signed checkpoint "
                    f"(seq {claimed}): records were removed or an older copy "
                    "was restored; run `journal recover` with the "
                    "administrators"
                )
            else:
                problems.append(
                    f"journal {journal_path}: bytes before the signed checkpoint "
                    f"(seq {state.seq}) changed on disk"
                )
            state = StationState()
        recorder = cls(
            store, keystore, appliance_id, state, report, problems, checkpoint_path, notes
        )
        recorder.checkpoint_claims = claimed
        recorder._fold_unverified(audit_key)
        if report.damage is not None:
            problems.append(f"journal {journal_path} is damaged: {report.damage}")
        return recorder

    def _fold_unverified(self, audit_key: bytes | None) -> None:
        """Verify and fold each record after the state's head; stop at the first bad one."""
        first = self.state.length
        if first >= len(self.store):
            return
        if audit_key is None:
            self.problems.append(
                f"journal {self.store.path} holds {len(self.store)} records "
                "but the signing token has no audit key to check them"
            )
            return
        for index in range(first, len(self.store)):
            try:
                entry = Entry.from_bytes(self.store.entry(index))
                if not entry.verify(audit_key):
                    raise JournalError("signature does not verify under the audit key")
                inputs = self._inputs_of(entry.record)
                self.state.apply(entry.record, entry.record.hash(), inputs)
                self.inputs_since_checkpoint += len(inputs or ())
            except MissingTranscriptError as exc:
                self.problems.append(
                    f"journal {self.store.path}: record at position {index} verifies, but {exc}"
                )
                self.transcript_missing = index
                return
            except (JournalError, StationError, ValueError) as exc:
                self.problems.append(
                    f"journal {self.store.path}: record at position {index} does not verify: {exc}"
                )
                self.first_bad = index
                return

    def _inputs_of(self, record: Record) -> list[OutPoint] | None:
        """An approval's inputs, from the transcript it names (checked by the fold against
        the record's digest); None for every other record."""
        details = record.details
        if (
            record.event != "signing_decision"
            or record.decision != "approved"
            or "outpoints_sha256" not in details
        ):
            return None
        digest = record.subjects.get("transcript", b"")
        path = self.checkpoint_path.parent / "transcripts" / f"{digest.hex()}.cbor"
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise MissingTranscriptError(
                f"its transcript {path} cannot be read "
                f"({exc.strerror}): restore it from the export "
                "bundle it went into"
            ) from exc
        if hashlib.sha256(data).digest() != digest:
            raise MissingTranscriptError(
                f"its transcript {path} is not the one it names: "
                "restore it from the export bundle it went into"
            )
        try:
            return transcript_outpoints(canonical.decode(data, max_size=1 << 26))
        except canonical.CanonicalError as exc:
            raise StationError(f"its transcript {path} is unreadable: {exc}") from exc

    first_bad: int | None = None  # the first record that did not verify, if any
    transcript_missing: int | None = None  # a good record whose transcript is not there
    checkpoint_claims: int | None = None  # a signed checkpoint's seq past the journal's end

    # -- reading ----------------------------------------------------------------------------

    @property
    def usable(self) -> bool:
        return not self.problems

    def entries(self, first: int = 0) -> list[Entry]:
        return [Entry.from_bytes(raw) for raw in self.store.entries(first)]

    def last(self) -> Entry | None:
        raw = self.store.last()
        return None if raw is None else Entry.from_bytes(raw)

    def hash_at(self, seq: int) -> bytes:
        """The hash of record ``seq`` in the verified chain."""
        return self.state.hash_at(seq)

    def require_clock(self, now: int | None = None) -> int:
        """The station's time, refused when it is behind the journal's last record."""
        now = int(time.time()) if now is None else now
        if now < self.state.last_time:
            raise ClockError(
                f"the station clock ({now}) is behind the journal's last record (seq "
                f"{self.state.seq}, time {self.state.last_time}): set the clock right; "
                "nothing is reviewed or signed until it is"
            )
        return now

    # -- writing ----------------------------------------------------------------------------

    def record(
        self,
        event: str,
        *,
        actors: Iterable[str] = (),
        subjects: Mapping[str, bytes] | None = None,
        decision: str | None = None,
        details: Mapping[str, Any] | None = None,
        outpoints: Sequence[OutPoint] | None = None,
    ) -> Entry:
        """Append one signed record (the signing token must be unlocked), then anchor it."""
        if self.problems:
            raise JournalError("the journal has problems: " + "; ".join(self.problems))
        now = self.require_clock()
        record = Record(
            seq=self.state.seq + 1,
            prev_hash=self.state.head,
            time=now,
            appliance_id=self.appliance_id,
            event=event,
            actors=tuple(actors),
            subjects=dict(subjects or {}),
            decision=decision,
            details=dict(details or {}),
        )
        entry = seal(
            record, self.keystore.sign_audit_digest, audit_pubkey=self.keystore.audit_public_key()
        )
        try:
            # folded first: a record the state cannot follow is a bug and never reaches disk
            self.state.apply(record, record.hash(), outpoints)
            self.store.append(entry.to_bytes())
            self.inputs_since_checkpoint += len(outpoints or ())
        except BaseException as exc:
            self.problems.append(
                f"journal seq {record.seq} ({event}) was not written: {exc}; open the station again"
            )
            raise
        self.anchor()
        return entry

    def anchor(self) -> None:
        """Move the signing token's anchor to the journal head (token unlocked)."""
        if self.state.seq < 0:
            return
        write_anchor(
            self.keystore.hsm,
            self.keystore.session(),
            self.appliance_id,
            Anchor(self.state.seq, self.state.head),
            f"signing token {self.keystore.token_label!r}",
        )

    def checkpoint(self, force: bool = False) -> None:
        """Sign the state at the head (token unlocked) once :data:`CHECKPOINT_EVERY` records
        or :data:`CHECKPOINT_INPUTS` approved inputs have followed the last checkpoint (or
        ``force``): until then the next open verifies those few records itself, which costs
        less than rewriting the checkpoint."""
        if self.problems or self.state.seq < 0:
            return
        due = (
            self.state.seq - self.checkpoint_seq >= CHECKPOINT_EVERY
            or self.inputs_since_checkpoint >= CHECKPOINT_INPUTS
        )
        if not force and not due:
            return
        write_checkpoint(
            self.checkpoint_path,
            self.state,
            self.store.start_at(self.state.seq),
            self.keystore.sign_audit_digest,
        )
        self.checkpoint_seq = self.state.seq
        self.inputs_since_checkpoint = 0

    def verify(self) -> list[str]:
        """Problems found in the whole journal, every record re-checked from the first."""
        audit_key = self.state.audit_key
        found = list(self.problems)
        if audit_key is None:
            return found or ([] if not len(self.store) else ["no audit key in the journal"])
        entries = []
        for index in range(len(self.store)):
            try:
                entries.append(Entry.from_bytes(self.store.entry(index)))
            except (JournalError, JournalStoreError) as exc:
                found.append(f"position {index}: {exc}")
                return found
        report = verify_journal(entries, audit_key)
        return found + [str(finding) for finding in report.findings]
