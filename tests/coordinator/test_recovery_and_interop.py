"""Bitcoin Core as the last cosigner (``walletprocesspsbt`` finalizes by default), and the
coordinator's side of recovering a signed output the station never delivered.

The cosigner here is the regtest node's own wallet, answering ``walletprocesspsbt`` the way
Core does: it signs with the key imported by ``importdescriptors``, finalizes every input
that then has enough signatures, drops the partial signatures, and returns the network
transaction as ``hex``.
"""

from __future__ import annotations

import base64

from online_coordinator.cli import main as coordinator_main
from online_coordinator.config import load_config
from shared.bitcoin.address import Network, private_key_to_wif
from shared.bitcoin.encoding import compact_size, with_length
from shared.psbt.model import Psbt
from shared.psbt.signer import sign_psbt
from tests.coordinator.conftest import Desk
from tests.coordinator.softappliance import SoftAppliance, pubkey, secret
from tests.coordinator.test_broadcast_faults import (
    AMOUNT,
    AMOUNT_SATS,
    alerts,
    broadcast_rows,
    status_of,
)
from tests.coordinator.test_flow import BTC, create, funded_single, paid_to, payee

CORE_KEY = secret("bitcoin core cosigner")


def core_vault(desk: Desk) -> tuple[SoftAppliance, SoftAppliance]:
    """2-of-3: appliances A and B (bip32 keys: the vault is ranged, change has a fresh
    address), and a key held by the node's wallet (Core)."""
    rpc = load_config(desk.state).rpc()
    wif = private_key_to_wif(CORE_KEY, Network.REGTEST)
    assert rpc.call("importdescriptors", [{"desc": f"wpkh({wif})", "timestamp": "now"}]) == [
        {"success": True}
    ]
    a, b = SoftAppliance("cold-a", bip32=True), SoftAppliance("cold-b", bip32=True)
    exports = desk.export_args(a, b)
    out = desk.ok(
        "wallet",
        "multisig",
        "treasury",
        "--threshold",
        "2",
        *exports,
        "--cosigner",
        pubkey(CORE_KEY).hex(),
    )
    descriptor = next(line for line in out.splitlines() if line.startswith("wsh("))
    for appliance in (a, b):
        desk.ok(
            "wallet",
            "confirm-pin",
            "treasury",
            desk.write(f"{appliance.appliance_id}.pin", appliance.pin(descriptor)),
        )
    address = desk.ok("wallet", "address", "treasury").split()[0]
    desk.fund(address, BTC, 2)
    desk.ok("sync")
    return a, b


def core_process(desk: Desk, psbt: bytes) -> dict:
    rpc = load_config(desk.state).rpc()
    return rpc.call("walletprocesspsbt", base64.b64encode(psbt).decode())


def test_core_finalized_response_is_verified_and_accepted(desk: Desk) -> None:
    a, _ = core_vault(desk)
    request = create(desk, "m1", [(payee(1), AMOUNT, "INV-1")])
    signed_a = desk.write("a.psbt", a.sign(request.read_bytes()))
    partly = desk.ok("batch", "import", "m1", signed_a)
    assert "more signatures needed: input 0: has 1 of the 2 signatures required" in partly
    assert "needed: 0" not in partly
    combined = desk.tmp / "combined.psbt"
    assert coordinator_main(["psbt", "combine", str(request), signed_a, "-o", str(combined)]) == 0
    reply = core_process(desk, combined.read_bytes())
    assert reply["complete"] is True and "hex" in reply
    final = Psbt.from_text(reply["psbt"])
    assert all(inp.is_finalized and not inp.partial_sigs for inp in final.inputs)
    # Tampered final witnesses are refused as strictly as partial signatures.
    for name, tamper in _tamperings(final).items():
        result = desk.run("batch", "import", "m1", desk.write(f"{name}.psbt", tamper))
        assert result.code == 2 and "refused" in result.err, (name, result.err)
    out = desk.ok("batch", "import", "m1", desk.write("core.psbt", reply["psbt"]))
    assert "complete: ready to broadcast" in out and "approved by cold-a" in out
    sent = desk.ok("batch", "broadcast", "m1")
    txid = sent.split("broadcast ")[1].split()[0]
    assert bytes.fromhex(reply["hex"]) == desk.node.raw_transaction(txid)  # Core's bytes
    desk.node.mine(1)
    desk.ok("sync")
    assert status_of(desk, "m1")["state"] == "confirmed" and alerts(desk) == []


def _tamperings(final: Psbt) -> dict[str, bytes]:
    """Finalized responses that must not pass: a signature broken, one missing, extras."""
    out = {}
    witness = list(final.inputs[0].final_script_witness or [])
    cases = {
        "flipped": [
            witness[0],
            witness[1][:10] + bytes([witness[1][10] ^ 1]) + witness[1][11:],
            *witness[2:],
        ],
        "one-signature": [witness[0], witness[1], witness[-1]],
        "dummy": [b"\x01", *witness[1:]],
        "other-script": [*witness[:-1], witness[-1][:-1] + b"\xaf"],
    }
    for name, items in cases.items():
        copy = Psbt.parse(final.serialize())
        copy.inputs[0].set(0x08, compact_size(len(items)) + b"".join(with_length(i) for i in items))
        out[name] = copy.serialize()
    return out


def test_an_appliance_signature_inside_a_final_witness_needs_its_receipt(desk: Desk) -> None:
    """Core finalizes over A's signature; if A's receipt was stripped, the import refuses."""
    a, _ = core_vault(desk)
    request = create(desk, "m1", [(payee(1), AMOUNT, "INV-1")])
    signed_a, _ = sign_psbt(Psbt.parse(request.read_bytes()), a.keys)  # no receipt
    reply = core_process(desk, signed_a.serialize())
    result = desk.run("batch", "import", "m1", desk.write("core.psbt", reply["psbt"]))
    assert result.code == 2
    assert "cold-a" in result.err and "without attaching an approval receipt" in result.err


# -- a signed output the station journaled but never delivered --------------------------------


def test_lost_signed_output_is_asked_for_again_and_counted_once(desk: Desk) -> None:
    """The coordinator's side of recovery (the station's re-show is built separately): the
    request is shown again unchanged, the re-shown signed PSBT is the approved transaction,
    imported once however often it arrives, broadcast and final; nothing is paid twice."""
    appliance = SoftAppliance("cold-1")
    funded_single(desk, appliance)
    request = create(desk, "b1", [(payee(1), AMOUNT, "INV-1")])
    original = request.read_bytes()
    appliance.sign(original)  # signed and journaled at the station; the output is lost
    assert status_of(desk, "b1")["state"] == "awaiting_signatures"
    asked = desk.ok("batch", "reshow-request", "b1", "--out", str(desk.tmp / "again"))
    meta_line = next(line for line in asked.splitlines() if "ask the station again" in line)
    assert "read aloud:" in asked and "replayed" in asked and "batch import b1" in asked
    assert (desk.tmp / "again" / "b1.psbt").read_bytes() == original  # the same request
    reshown = desk.write("reshown.psbt", appliance.last_signed or b"")
    assert "complete: ready to broadcast" in desk.ok("batch", "import", "b1", reshown)
    again = desk.ok("batch", "import", "b1", reshown)  # shown twice at the station
    assert "already imported: counted once" in again
    with desk.store() as store:
        assert store.one("SELECT COUNT(*) AS n FROM responses")["n"] == 1
        request_id = bytes(store.one("SELECT request_id FROM requests")["request_id"]).hex()
    assert request_id in meta_line
    refused = desk.run("batch", "reshow-request", "b1")  # nothing missing any more
    assert refused.code == 2
    sent = desk.ok("batch", "broadcast", "b1")
    assert Psbt.parse(original).unsigned_tx.txid_hex in sent  # the approved txid
    desk.node.mine(6)
    desk.ok("sync")
    assert status_of(desk, "b1")["state"] == "final"
    assert [u.value for u in paid_to(desk.node, payee(1))] == [AMOUNT_SATS]
    assert len(broadcast_rows(desk)) == 1 and alerts(desk) == []


def test_a_reshow_must_carry_the_original_approval_receipt(desk: Desk) -> None:
    """One receipt per appliance: a re-shown PSBT carrying only a "shown again" record has
    no approval behind its signature, and is refused until the approval comes with it."""
    appliance = SoftAppliance("cold-1")
    funded_single(desk, appliance)
    request = create(desk, "b1", [(payee(1), AMOUNT, "INV-1")])
    appliance.sign(request.read_bytes())
    note_only = desk.write("note.psbt", appliance.reshow(reissue_record=True))
    result = desk.run("batch", "import", "b1", note_only)
    assert result.code == 2 and "without attaching an approval receipt" in result.err
    assert "complete" in desk.ok("batch", "import", "b1", desk.write("r.psbt", appliance.reshow()))
