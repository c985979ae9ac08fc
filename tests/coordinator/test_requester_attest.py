"""``batch attest``: the requester's passkey assertion rides in the request the station
reads, outside the request hash; an assertion over another request, or malformed, is
refused in one line and changes nothing; a signed request can no longer be attested."""

from __future__ import annotations

import json

from shared.psbt.model import Psbt
from shared.request import read_assertion, read_request, request_hash
from tests.coordinator.conftest import Desk
from tests.coordinator.softappliance import SoftAppliance
from tests.coordinator.test_flow import create, funded_single, payee, sign_and_import
from tests.passkeys import SoftPasskey

BOTH_STORES = True  # SQLite and PostgreSQL (tests/coordinator/conftest.py)

ALICE = SoftPasskey("alice")


def stored_request(desk: Desk, label: str) -> Psbt:
    """The batch's request as the coordinator keeps it."""
    with desk.store() as store:
        row = store.one(
            "SELECT unsigned_psbt FROM requests r JOIN batches b ON r.batch_id = b.id "
            "WHERE b.label = ?",
            label,
        )
    return Psbt.parse(bytes(row["unsigned_psbt"]))


def test_an_attested_request_carries_the_assertion_and_keeps_its_hash(desk: Desk) -> None:
    appliance = SoftAppliance("cold-1")
    funded_single(desk, appliance)
    request = create(desk, "b1", [(payee(1), "0.1", "INV-1")])
    psbt = Psbt.parse(request.read_bytes())
    digest = request_hash(psbt, read_request(psbt))

    wrong = ALICE.assert_(bytes(32))
    result = desk.run(
        "batch", "attest", "b1", desk.write("wrong.json", json.dumps(wrong.to_webauthn_json()))
    )
    assert result.code == 2 and "is over another request" in result.err
    assert len(result.err.strip().splitlines()) == 1
    result = desk.run("batch", "attest", "b1", desk.write("junk.json", "{not json"))
    assert result.code == 2 and "assertion is not JSON" in result.err
    assert read_assertion(stored_request(desk, "b1")) is None

    assertion = ALICE.assert_(digest)
    out = desk.ok(
        "batch", "attest", "b1", desk.write("a.json", json.dumps(assertion.to_webauthn_json()))
    )
    assert digest.hex()[:16] in out
    stored = stored_request(desk, "b1")
    assert read_assertion(stored) == assertion
    assert request_hash(stored, read_request(stored)) == digest
    exported = desk.tmp / "again"
    desk.ok("batch", "export", "b1", "--out", str(exported))
    assert read_assertion(Psbt.parse((exported / "b1.psbt").read_bytes())) == assertion

    sign_and_import(desk, "b1", exported / "b1.psbt", appliance)
    later = ALICE.assert_(digest)
    result = desk.run(
        "batch", "attest", "b1", desk.write("late.json", json.dumps(later.to_webauthn_json()))
    )
    assert result.code == 2 and "no open request to attest" in result.err
    assert read_assertion(stored_request(desk, "b1")) == assertion
