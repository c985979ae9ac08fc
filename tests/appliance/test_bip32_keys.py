"""The bip32-seed key model (issue 17): a seed the HSM generates and keeps, unlimited fresh
addresses from its account xpub, exports other wallets read, signatures by its children.

Each rule has the test that tries to break it: a seed that is readable or not the token's
own, a child the request names that is not the one the path gives, a change output whose
hint claims our fingerprint at another index, a crash between the intent and the record.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from pkcs11 import Attribute, ObjectClass
from pkcs11.exceptions import AttributeSensitive

from appliance.keystore import BackupModel, KeystoreError
from shared.bitcoin.address import Network, address_to_script
from shared.bitcoin.bip32 import ExtendedKey, KeyOrigin
from shared.bitcoin.descriptor import Descriptor
from shared.bitcoin.tx import SEQUENCE_RBF, OutPoint, Transaction, TxIn, TxOut
from shared.key_models import account_from_seed, account_path
from shared.psbt import Psbt, extract, finalize
from shared.psbt.fields import (
    PSBT_IN_BIP32_DERIVATION,
    PSBT_IN_NON_WITNESS_UTXO,
    PSBT_IN_WITNESS_UTXO,
    PSBT_OUT_BIP32_DERIVATION,
)
from shared.request import RequestMetadata, attach_request
from shared.ur.registry import decode_crypto_account, decode_crypto_hdkey, decode_crypto_output
from shared.ur.ur import URDecoder
from tests.appliance.conftest import softhsm_available
from tests.appliance.medium_tools import decisions
from tests.appliance.test_ceremonies_cli import appliance, officers, run
from tests.kernel import verify_all

pytestmark = pytest.mark.skipif(not softhsm_available(), reason="SoftHSM2 is not installed")

TWO, TWO_PINS = officers("officer-1", "officer-2")
__all__ = ["appliance"]  # the station fixture, used here
PAYEE = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"
COIN = 100_000


# -- the keystore, on a bare token ---------------------------------------------------------


def test_the_seed_is_generated_in_the_token_and_cannot_be_read_as_a_value(keystore):
    info = keystore.generate_seed("vault", os.urandom(16), Network.REGTEST)
    assert info.key_model == "bip32-seed" and info.key_origin.endswith("/84h/1h/0h")
    xpub = ExtendedKey.parse(info.xpub)
    assert xpub.public_key.hex() == info.public_key and xpub.depth == 3
    with keystore.hsm.lock:
        seed = keystore.session().get_key(object_class=ObjectClass.SECRET_KEY, id=info.key_id_bytes)
        with pytest.raises(AttributeSensitive):
            seed[Attribute.VALUE]
        assert seed[Attribute.LOCAL] and seed[Attribute.ALWAYS_SENSITIVE]
        assert not seed[Attribute.MODIFIABLE] and not seed[Attribute.COPYABLE]
    assert keystore.verify_key_attributes("vault")["always_sensitive"]


def test_a_child_signs_only_for_the_key_the_request_names(keystore):
    info = keystore.generate_seed("vault", os.urandom(16), Network.REGTEST)
    account = ExtendedKey.parse(info.xpub)
    child = account.derive_path([0, 5]).public_key
    digest = os.urandom(32)
    der = keystore.sign_digest("vault", digest, (0, 5), Network.REGTEST, child)
    from coincurve import PublicKey

    assert PublicKey(child).verify(der, digest, hasher=None)
    other = account.derive_path([0, 6]).public_key
    with pytest.raises(KeystoreError, match="not the key the request names"):
        keystore.sign_digest("vault", digest, (0, 5), Network.REGTEST, other)
    with pytest.raises(KeystoreError, match="name the child"):
        keystore.sign_digest("vault", digest)


def test_a_single_hsm_key_has_no_children(keystore):
    keystore.generate_key("single", BackupModel.NON_EXTRACTABLE)
    with pytest.raises(KeystoreError, match="no child"):
        keystore.sign_digest("single", os.urandom(32), (0, 1))


def test_a_crashed_seed_generation_is_adopted_with_the_same_account(keystore):
    key_id = os.urandom(16)
    first = keystore.generate_seed("vault", key_id, Network.REGTEST)
    keystore.set_registry([])  # the record never reached the journal
    again = keystore.adopt_seed("vault", key_id, Network.REGTEST)
    assert again is not None and again.xpub == first.xpub
    keystore.set_registry([])
    assert keystore.adopt_seed("other", os.urandom(16), Network.REGTEST) is None


def test_an_imported_secret_is_not_adopted_as_a_seed(keystore):
    """A secret someone imported under the intent's key id (CKA_LOCAL false) was not made
    by the token: refused, so no one can plant a seed they know."""
    from pkcs11 import KeyType

    key_id = os.urandom(16)
    with keystore.hsm.lock:
        keystore.session().create_object(
            {
                Attribute.CLASS: ObjectClass.SECRET_KEY,
                Attribute.KEY_TYPE: KeyType.GENERIC_SECRET,
                Attribute.VALUE: os.urandom(32),
                Attribute.ID: key_id,
                Attribute.LABEL: "planted",
                Attribute.TOKEN: True,
                Attribute.PRIVATE: True,
                Attribute.SENSITIVE: True,
                Attribute.EXTRACTABLE: True,
            }
        )
    with pytest.raises(KeystoreError, match="CKA_LOCAL is false"):
        keystore.adopt_seed("planted", key_id, Network.REGTEST)


# -- the station, through its CLI ----------------------------------------------------------


def _status_key(state: Path, label: str) -> dict:
    keys = json.loads(run(state, "status").stdout)["keys"]
    return next(k for k in keys if k["label"] == label)


def _ur_value(path: Path) -> tuple[str, bytes]:
    decoder = URDecoder()
    for line in path.read_text().split():
        decoder.receive(line)
    ur = decoder.result
    assert ur is not None
    return ur.type, bytes(ur.cbor)


@pytest.fixture
def bip32_station(appliance, tmp_path) -> tuple[Path, Descriptor, Path]:
    state, _ = appliance
    done = run(state, "keygen", "treasury", "--key-model", "bip32-seed", *TWO, pins=TWO_PINS)
    assert done.returncode == 0, done.stderr
    assert "account [" in done.stdout
    assert "public key " in done.stdout and "(fingerprint " in done.stdout  # issue 18
    out = tmp_path / "export"
    done = run(state, "export-wallet", "treasury", "--out", str(out), *TWO, pins=TWO_PINS)
    assert done.returncode == 0, done.stderr
    return state, Descriptor.parse((out / "wallet.descriptor").read_text().strip()), out


def test_a_bip32_wallet_exports_a_ranged_descriptor_and_the_forms_others_read(bip32_station):
    state, descriptor, out = bip32_station
    key = _status_key(state, "treasury")
    assert key["key_model"] == "bip32-seed"
    assert descriptor.is_ranged and descriptor.branch_count == 2
    assert str(descriptor.keys[0].xpub) == key["xpub"]
    assert descriptor.keys[0].origin == KeyOrigin.parse(key["key_origin"])

    core = json.loads((out / "bitcoin-core.json").read_text())
    assert [c["internal"] for c in core] == [False, True]
    assert core[0]["desc"].split("#")[0].endswith("/0/*)")
    assert core[1]["desc"].split("#")[0].endswith("/1/*)") and "label" not in core[1]
    assert all(Descriptor.parse(c["desc"]).is_ranged for c in core)

    kind, cbor = _ur_value(out / "account.ur")
    account = decode_crypto_account(cbor)
    assert kind == "crypto-account"
    assert account.master_fingerprint == descriptor.keys[0].origin.fingerprint
    assert account.descriptors()[0].keys[0].xpub == descriptor.keys[0].xpub
    kind, cbor = _ur_value(out / "hdkey.ur")
    hdkey = decode_crypto_hdkey(cbor)
    assert kind == "crypto-hdkey" and hdkey.xpub == descriptor.keys[0].xpub
    assert hdkey.origin == descriptor.keys[0].origin
    kind, cbor = _ur_value(out / "receive.ur")
    receive = decode_crypto_output(cbor)
    assert receive == descriptor.expand_multipath()[0]


def _request(descriptor: Descriptor, spends: list[tuple[bool, int]], change: tuple[bool, int]):
    """A PSBT spending our coins at (change, index) with hints, paying PAYEE and change."""
    fundings, hints = [], []
    for branch, index in spends:
        derived = descriptor.derive(index, branch)
        fundings.append(
            Transaction(
                inputs=[TxIn(OutPoint(os.urandom(32), 0), b"\x51")],
                outputs=[TxOut(COIN, derived.script_pubkey)],
            )
        )
        hints.append(derived.keys[0])
    total = COIN * len(spends)
    change_out = descriptor.derive(change[1], change[0])
    tx = Transaction(
        inputs=[TxIn(OutPoint(f.txid, 0), sequence=SEQUENCE_RBF) for f in fundings],
        outputs=[
            TxOut(total // 2, address_to_script(PAYEE, Network.REGTEST)),
            TxOut(total // 2 - 2_000, change_out.script_pubkey),
        ],
    )
    psbt = Psbt.from_unsigned_tx(tx)
    for inp, funding, (pubkey, origin) in zip(psbt.inputs, fundings, hints, strict=True):
        inp.set(PSBT_IN_NON_WITNESS_UTXO, funding.serialize())
        inp.set(PSBT_IN_WITNESS_UTXO, funding.outputs[0].serialize())
        inp.set(PSBT_IN_BIP32_DERIVATION, origin.to_psbt_bytes(), keydata=pubkey)
    pubkey, origin = change_out.keys[0]
    psbt.outputs[1].set(PSBT_OUT_BIP32_DERIVATION, origin.to_psbt_bytes(), keydata=pubkey)
    now = int(time.time())
    meta = RequestMetadata(
        request_id=os.urandom(16),
        batch_id="b32",
        requester="ops",
        created=now - 5,
        expiry=now + 3600,
        purpose="payout",
        network="regtest",
    )
    return attach_request(psbt, meta), [f.outputs[0] for f in fundings]


def _sign(state: Path, tmp_path: Path, psbt: Psbt, name: str):
    (tmp_path / f"{name}.psbt").write_bytes(psbt.serialize())
    out = tmp_path / f"{name}-signed.psbt"
    done = run(
        state, "sign", "--in", str(tmp_path / f"{name}.psbt"), *TWO, "--out", str(out),
        pins=TWO_PINS,
    )  # fmt: skip
    return done, out


def test_children_sign_and_bitcoin_core_accepts_them(bip32_station, tmp_path):
    state, descriptor, _ = bip32_station
    psbt, spent = _request(descriptor, [(False, 0), (False, 7), (True, 3)], (True, 4))
    done, out = _sign(state, tmp_path, psbt, "spend")
    assert done.returncode == 0, done.stderr
    assert "signed 3 input(s)" in done.stdout
    signed = Psbt.parse(out.read_bytes())
    children = {k for inp in signed.inputs for k in inp.partial_sigs}
    assert children == {descriptor.derive(i, c).keys[0][0] for c, i in ((0, 0), (0, 7), (1, 3))}
    tx = extract(finalize(signed).psbt)
    assert verify_all(tx, spent) == [True] * 3


def test_a_change_hint_with_our_fingerprint_at_another_index_is_refused(bip32_station, tmp_path):
    """The change output's script is change index 4 but its hint says index 9: the hint
    says where to look, never what is ours; the output is not ours and is refused."""
    state, descriptor, _ = bip32_station
    psbt, _ = _request(descriptor, [(False, 1)], (True, 4))
    wrong_pubkey, wrong_origin = descriptor.derive(9, True).keys[0]
    psbt.outputs[1].delete(PSBT_OUT_BIP32_DERIVATION, descriptor.derive(4, True).keys[0][0])
    psbt.outputs[1].set(
        PSBT_OUT_BIP32_DERIVATION, wrong_origin.to_psbt_bytes(), keydata=wrong_pubkey
    )
    done, out = _sign(state, tmp_path, psbt, "lying")
    assert done.returncode != 0 and not out.exists()
    assert "change_not_ours" in done.stderr or "not derive from the pinned wallet" in done.stderr


def test_change_beyond_any_wallet_scan_is_refused(bip32_station, tmp_path):
    """A compromised coordinator parks "change" at index 2^31-1, where neither it, Core's
    import, the address check nor the audit would ever look: refused, nothing signed."""
    state, descriptor, _ = bip32_station
    psbt, _ = _request(descriptor, [(False, 2)], (True, 2**31 - 1))
    done, out = _sign(state, tmp_path, psbt, "far")
    assert done.returncode != 0 and not out.exists()
    assert "beyond 20000: no wallet scan would find those coins" in done.stderr


def test_an_output_to_our_receive_branch_is_paid_not_change(bip32_station, tmp_path):
    """Change is on the change branch: an output to one of our receive addresses counts
    as paid out (the policy's limits apply to it), not as change."""
    state, descriptor, _ = bip32_station
    psbt, _ = _request(descriptor, [(False, 3)], (False, 9))
    done, _ = _sign(state, tmp_path, psbt, "receive-change")
    assert done.returncode == 0, done.stderr
    record = decisions(state)[-1].record
    assert record.details["paid_out"] == COIN - 2_000  # both outputs, none of it change


def test_the_account_matches_the_seed_path_rules():
    """Same seed, same account, on the BIP-84 path of the network's coin type."""
    seed = bytes(range(32))
    _, account = account_from_seed(seed, Network.REGTEST)
    assert list(account.origin.path) == list(account_path(Network.REGTEST))
    master = ExtendedKey.from_seed(seed, Network.TESTNET)
    assert account.xpub == master.derive_path("m/84h/1h/0h").neuter()
    _, main = account_from_seed(seed, Network.MAINNET)
    assert str(main.xpub).startswith("xpub") and main.origin.path[1] == 0x80000000


def test_the_station_says_whether_an_address_is_ours_and_where(bip32_station):
    """Issue 18, COLDCARD's address explorer: an officer checks an address before a
    customer gets it. Ours: which wallet, branch, index and key; anyone else's: refused."""
    state, descriptor, _ = bip32_station
    receive = descriptor.address(37, Network.REGTEST)
    change = descriptor.address(5, Network.REGTEST, change=True)
    done = run(state, "address-check", receive)
    assert done.returncode == 0, done.stderr
    assert "receive index 37" in done.stdout and "key treasury (bip32 seed, active)" in done.stdout
    assert "change index 5" in run(state, "address-check", change).stdout
    beyond = run(state, "address-check", descriptor.address(60, Network.REGTEST), "--up-to", "50")
    assert beyond.returncode == 1 and "NOT an address of this station's wallets" in beyond.stderr
    stranger = run(state, "address-check", PAYEE)
    assert stranger.returncode == 1 and "NOT an address" in stranger.stderr
    garbage = run(state, "address-check", "bc1qnotanaddress")
    assert garbage.returncode == 1 and "is not a regtest address" in garbage.stderr
