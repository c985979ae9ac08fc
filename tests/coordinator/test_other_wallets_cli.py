"""The coordinator takes cosigners as other wallets export them and gives the wallet back
in their forms (issue 17): a COLDCARD xpub file as a ``--cosigner``, and ``wallet export``
writing the Bitcoin Core import and the COLDCARD setup file for an all-xpub vault."""

from __future__ import annotations

import json

from shared.bitcoin.address import Network, b58check_encode
from shared.bitcoin.bip32 import ExtendedKey
from shared.bitcoin.descriptor import Descriptor
from tests.coordinator.conftest import Desk
from tests.coordinator.softappliance import SoftAppliance, secret


def _coldcard_file(desk: Desk) -> tuple[str, ExtendedKey]:
    master = ExtendedKey.from_seed(secret("coldcard q seed"), Network.TESTNET)
    xpub = master.derive_path("m/48h/1h/0h/2h").neuter()
    raw = bytearray(xpub.serialize())
    raw[:4] = (0x02575483).to_bytes(4, "big")  # Vpub, as COLDCARD writes it
    export = {
        "p2wsh_deriv": "m/48'/1'/0'/2'",
        "p2wsh": b58check_encode(bytes(raw)),
        "xfp": master.fingerprint.hex().upper(),
    }
    return desk.write("ccxp-cold.json", json.dumps(export)), xpub


def test_a_coldcard_cosigner_file_joins_a_vault_and_coldcard_gets_its_setup_file(desk: Desk):
    a, b = SoftAppliance("cold-a", bip32=True), SoftAppliance("cold-b", bip32=True)
    exports = desk.export_args(a, b)
    path, xpub = _coldcard_file(desk)
    out = desk.ok("wallet", "multisig", "vault", "--threshold", "2", *exports, "--cosigner", path)
    vault = Descriptor.parse(next(x for x in out.splitlines() if x.startswith("wsh(")))
    assert any(k.xpub == xpub and k.branch_count == 2 for k in vault.keys)

    folder = desk.tmp / "for-others"
    written = desk.ok("wallet", "export", "vault", "--out", str(folder))
    assert "coldcard-multisig.txt" in written
    setup = (folder / "coldcard-multisig.txt").read_text()
    assert "Policy: 2 of 3" in setup and f": {xpub}" in setup
    core = json.loads((folder / "bitcoin-core.json").read_text())
    assert [c["internal"] for c in core] == [False, True]


def test_a_vault_of_plain_keys_gets_no_coldcard_file_and_says_why(desk: Desk):
    a, b = SoftAppliance("cold-a"), SoftAppliance("cold-b")
    exports = desk.export_args(a, b)
    path, _ = _coldcard_file(desk)
    desk.ok("wallet", "multisig", "vault", "--threshold", "2", *exports, "--cosigner", path)
    folder = desk.tmp / "for-others"
    result = desk.run("wallet", "export", "vault", "--out", str(folder))
    assert result.code == 0 and "no COLDCARD setup file" in result.err
    assert sorted(p.name for p in folder.iterdir()) == ["bitcoin-core.json"]
    bad = desk.write("bad.json", json.dumps({"xfp": "00000000"}))
    refused = desk.run("wallet", "multisig", "v2", "--threshold", "2", *exports, "--cosigner", bad)
    assert refused.code == 2 and "no P2WSH multisig key" in refused.err
