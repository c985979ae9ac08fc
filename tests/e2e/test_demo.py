"""The demo's payout file. The demo itself runs in CI as ``make demo`` (``.ci/run``, right
after ``make test``) and checks what it must have achieved before it exits 0
(``tests.e2e.demo.shortfalls``: both payments final on chain, the evidence and the audit
report written, no node left running); it is not run a second time inside the test suite.
"""

from __future__ import annotations

import hashlib

from shared.bitcoin.address import Network, script_to_address
from tests.e2e.demo import PAYOUTS_CSV


def test_payees_are_keys_nobody_holds() -> None:
    """The shipped CSV pays the documented hash-derived addresses, nothing else."""
    rows = PAYOUTS_CSV.read_text().splitlines()[1:]
    for n, row in enumerate(rows, start=1):
        program = hashlib.sha256(f"coldstation demo payee {n}".encode()).digest()[:20]
        assert row.split(",")[0] == script_to_address(b"\x00\x14" + program, Network.REGTEST)
    assert 5 <= len(rows) <= 10
