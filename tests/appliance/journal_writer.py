"""Child process for the SIGKILL test: append numbered records to a journal forever.

Usage: ``python journal_writer.py JOURNAL``. Prints ``ready <n>`` once the store is open
(n = entries already present), then the index of each record, flushed, only after
``append`` returned: a printed index is an acknowledged, fsynced record. The parent kills
this process with SIGKILL at a random moment and checks every acknowledged record survived.
"""

from __future__ import annotations

import hashlib
import sys

from appliance.journal_store import JournalStore


def record_payload(index: int) -> bytes:
    """The deterministic payload of record ``index``: mostly small, every 32nd one large.

    Large frames make a kill in the middle of ``write`` (a torn tail) possible at all.
    """
    seed = hashlib.sha256(b"coldstation journal record %d" % index).digest()
    size = 64 + seed[0] * 8 if index % 32 else 64 * 1024 + seed[1] * 256
    header = b"record %d\n" % index
    body = (seed * (size // len(seed) + 1))[: size - len(header)]
    return header + body


def main(path: str) -> None:
    store, _report = JournalStore.open(path)
    index = len(store)
    print(f"ready {index}", flush=True)
    while True:
        got = store.append(record_payload(index))
        if got != index:
            raise SystemExit(f"append returned {got}, expected {index}")
        print(index, flush=True)
        index += 1


if __name__ == "__main__":
    main(sys.argv[1])
