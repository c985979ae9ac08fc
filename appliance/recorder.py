"""Writing the journal: every event becomes a chained record, signed by the audit key in the
signing token, appended with fsync before the ceremony reports success.

The format and the verification live in :mod:`shared.journal` (the auditor replays with
the same code); storage is :mod:`appliance.journal_store`; this is the one place that joins
them, so no ceremony can write a record any other way.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from appliance.journal_store import JournalStore
from appliance.keystore import Keystore
from shared.journal import Entry, next_record, seal, verify_journal


class Recorder:
    def __init__(self, store: JournalStore, keystore: Keystore, appliance_id: str) -> None:
        self.store = store
        self.keystore = keystore
        self.appliance_id = appliance_id

    def entries(self) -> list[Entry]:
        return [Entry.from_bytes(raw) for raw in self.store.entries()]

    def last(self) -> Entry | None:
        raw = self.store.last()
        return None if raw is None else Entry.from_bytes(raw)

    def record(
        self,
        event: str,
        *,
        actors: Iterable[str] = (),
        subjects: Mapping[str, bytes] | None = None,
        decision: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> Entry:
        """Append one signed record (the signing token must be unlocked)."""
        previous = self.last()
        now = int(time.time())
        if previous is not None:
            now = max(now, previous.record.time)  # never backwards, even if the clock is
        record = next_record(previous, time=now, appliance_id=self.appliance_id, event=event,
                             actors=actors, subjects=subjects, decision=decision,
                             details=details)  # fmt: skip
        entry = seal(record, self.keystore.sign_audit_digest,
                     audit_pubkey=self.keystore.audit_public_key())  # fmt: skip
        self.store.append(entry.to_bytes())
        return entry

    def verify(self) -> list[str]:
        """Problems found in the whole journal (empty when it verifies)."""
        report = verify_journal(self.entries(), self.keystore.audit_public_key())
        return [str(finding) for finding in report.findings]
