"""What the journal says the appliance has already signed: replay, double-spend and daily
totals are judged from the appliance's own signed records, never from the coordinator."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from shared.bitcoin.tx import OutPoint
from shared.journal import Entry
from shared.policy import utc_day


@dataclass(frozen=True)
class SigningHistory:
    request_ids: frozenset[bytes]
    signed_outpoints: dict[OutPoint, bytes]  # outpoint -> txid (internal order) that spent it
    paid_by_day: dict[int, int] = field(default_factory=dict)

    @classmethod
    def from_entries(cls, entries: Iterable[Entry]) -> SigningHistory:
        seen: set[bytes] = set()
        spent: dict[OutPoint, bytes] = {}
        paid: dict[int, int] = {}
        for entry in entries:
            record = entry.record
            if record.event != "signing_decision":
                continue
            details = record.details
            request_id = details.get("request_id")
            if isinstance(request_id, bytes):
                seen.add(request_id)  # refused requests count as seen too: no retries
            if record.decision != "approved":
                continue
            txid = bytes.fromhex(details["txid"])[::-1]
            for text in details.get("outpoints", []):
                txid_hex, _, vout = text.partition(":")
                spent[OutPoint.from_hex(txid_hex, int(vout))] = txid
            day = utc_day(record.time)
            paid[day] = paid.get(day, 0) + int(details.get("paid_out", 0))
        return cls(frozenset(seen), spent, paid)

    def paid_on_day(self, now: int) -> int:
        """Satoshis already approved to others on the UTC day of ``now``."""
        return self.paid_by_day.get(utc_day(now), 0)
