"""Sign, combine, finalize and extract real spends; Bitcoin Core's interpreter judges them."""

from __future__ import annotations

import hashlib

import pytest
from coincurve import PrivateKey

from shared.bitcoin.script import multisig_script, p2wpkh_script, p2wsh_script
from shared.bitcoin.tx import OutPoint, Transaction, TxIn, TxOut
from shared.psbt import Psbt, PsbtError, combine, extract, finalize
from shared.psbt.signer import sign_psbt
from tests.kernel import verify_all
from tests.vectors import load_json

INTEROP = "psbt/interop_p2wpkh_p2wsh_sortedmulti.json"


def _secret(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def _pub(secret: bytes) -> bytes:
    return PrivateKey(secret).public_key.format()


class Wallet:
    """Three cosigner keys and one single-sig key, with scripts of each type we spend."""

    def __init__(self) -> None:
        self.single = _secret("single")
        self.cosigners = [_secret(f"cosigner-{i}") for i in range(3)]
        keys = [_pub(s) for s in self.cosigners]
        self.multi = multisig_script(2, keys)
        self.sortedmulti = multisig_script(2, sorted(keys))


def _spend(wallet: Wallet, kinds: list[str]) -> tuple[Psbt, list[TxOut]]:
    """A funding transaction paying each kind of script, and a PSBT spending all of it."""
    scripts = {
        "p2wpkh": (p2wpkh_script(_pub(wallet.single)), None),
        "multi": (p2wsh_script(wallet.multi), wallet.multi),
        "sortedmulti": (p2wsh_script(wallet.sortedmulti), wallet.sortedmulti),
    }
    funding = Transaction(
        inputs=[TxIn(OutPoint(bytes(32), 0xFFFFFFFF), b"\x51")],
        outputs=[TxOut(100_000 * (i + 1), scripts[k][0]) for i, k in enumerate(kinds)],
    )
    spend = Transaction(
        inputs=[TxIn(OutPoint(funding.txid, i), sequence=0xFFFFFFFD) for i in range(len(kinds))],
        outputs=[TxOut(sum(o.value for o in funding.outputs) - 1_000, p2wpkh_script(b"\x02" * 33))],
    )
    psbt = Psbt.from_unsigned_tx(spend)
    for i, kind in enumerate(kinds):
        psbt.inputs[i].set(0x00, funding.serialize())
        psbt.inputs[i].set(0x01, funding.outputs[i].serialize())
        if scripts[kind][1] is not None:
            psbt.inputs[i].set(0x05, scripts[kind][1])
    return psbt, funding.outputs


@pytest.fixture
def wallet() -> Wallet:
    return Wallet()


def test_p2wpkh_and_p2wsh_multisig_spend_verifies_in_bitcoin_core(wallet):
    psbt, spent = _spend(wallet, ["p2wpkh", "multi", "sortedmulti"])
    # Two cosigners sign on separate devices; the single key on a third.
    a, _ = sign_psbt(psbt, [wallet.cosigners[0]])
    b, _ = sign_psbt(psbt, [wallet.cosigners[2]])
    c, _ = sign_psbt(psbt, [wallet.single])
    result = finalize(combine([a, b, c]))
    assert result.complete, result.problems
    tx = extract(result.psbt)
    assert verify_all(tx, spent) == [True, True, True]


def test_one_signature_short_is_incomplete_and_named(wallet):
    psbt, _ = _spend(wallet, ["multi"])
    signed, _ = sign_psbt(psbt, [wallet.cosigners[1]])
    result = finalize(signed)
    assert not result.complete
    assert "input 0" in result.problems[0] and "1 of the 2" in result.problems[0]
    with pytest.raises(PsbtError, match="input 0: not finalized"):
        extract(result.psbt)


def test_corrupted_final_signature_fails_in_bitcoin_core(wallet):
    psbt, spent = _spend(wallet, ["p2wpkh", "sortedmulti"])
    signed, _ = sign_psbt(psbt, [wallet.single, *wallet.cosigners[:2]])
    tx = extract(finalize(signed).psbt)
    assert verify_all(tx, spent) == [True, True]
    for index, item in ((0, 0), (1, 1)):
        bad = Transaction.parse(tx.serialize())
        sig = bytearray(bad.inputs[index].witness[item])
        sig[10] ^= 0x01  # inside r
        bad.inputs[index].witness[item] = bytes(sig)
        assert verify_all(bad, spent)[index] is False


def test_wrong_amount_in_witness_utxo_breaks_the_signature(wallet):
    """BIP-143 commits to the amount: a lying witness UTXO yields an invalid spend."""
    psbt, spent = _spend(wallet, ["p2wpkh"])
    psbt.inputs[0].delete(0x00)  # witness UTXO alone, as a careless wallet sends it
    psbt.inputs[0].set(0x01, TxOut(spent[0].value + 1, spent[0].script_pubkey).serialize())
    signed, _ = sign_psbt(psbt, [wallet.single])
    tx = extract(finalize(signed).psbt)
    assert verify_all(tx, spent) == [False]


def test_witness_utxo_disagreeing_with_previous_transaction_is_refused(wallet):
    psbt, spent = _spend(wallet, ["p2wpkh"])
    psbt.inputs[0].set(0x01, TxOut(spent[0].value * 10, spent[0].script_pubkey).serialize())
    with pytest.raises(PsbtError, match="disagrees"):
        sign_psbt(psbt, [wallet.single])


def test_bad_partial_signature_is_refused_by_the_finalizer(wallet):
    psbt, _ = _spend(wallet, ["multi"])
    signed, _ = sign_psbt(psbt, wallet.cosigners[:2])
    pubkey = _pub(wallet.cosigners[0])
    good = signed.inputs[0].partial_sigs[pubkey]
    other, _ = sign_psbt(_spend(Wallet(), ["p2wpkh", "multi"])[0], wallet.cosigners[:1])
    forged = other.inputs[1].partial_sigs[pubkey]  # valid DER, signs another transaction
    assert forged != good
    signed.inputs[0].set(0x02, forged, keydata=pubkey)
    result = finalize(signed)
    assert not result.complete
    assert "does not verify" in result.problems[0]


def test_foreign_partial_signature_is_tolerated_not_used(wallet):
    psbt, spent = _spend(wallet, ["multi"])
    signed, _ = sign_psbt(psbt, wallet.cosigners[:2])
    stranger = _pub(_secret("stranger"))
    signed.inputs[0].set(
        0x02, signed.inputs[0].partial_sigs[_pub(wallet.cosigners[0])], keydata=stranger
    )
    combined = combine([psbt, signed])
    assert stranger in combined.inputs[0].partial_sigs
    tx = extract(finalize(combined).psbt)
    assert stranger not in b"".join(tx.inputs[0].witness)
    assert verify_all(tx, spent) == [True]


def test_finalizer_strips_signing_data_but_keeps_utxos_and_proprietary(wallet):
    psbt, _ = _spend(wallet, ["p2wpkh"])
    proprietary_key = b"\xfc\x0bcoldstation\x01"
    psbt.inputs[0].set_record(proprietary_key, b"request-id")
    signed, _ = sign_psbt(psbt, [wallet.single])
    final = finalize(signed).psbt.inputs[0]
    assert final.types() == {0x00, 0x01, 0x08, 0xFC}
    assert final.proprietary == {proprietary_key: b"request-id"}


def test_interop_vector_matches_embit_bdk_and_bitcointx():
    vector = load_json(INTEROP)
    psbt = Psbt.from_text(vector["unsigned_psbt_base64"])
    # The vector was signed with k1, k2, k3, RFC 6979 with low-R grinding as Core does.
    secrets = [bytes.fromhex(k["privkey_hex"]) for k in vector["keys"][:3]]
    signed, added = sign_psbt(psbt, secrets)
    assert added == 3  # k1 on the P2WPKH input, k2 and k3 on the multisig
    tx = extract(finalize(signed).psbt)
    assert tx.serialize().hex() == vector["final_tx_hex"]
    funding = Transaction.parse(bytes.fromhex(vector["funding_tx_hex"]))
    assert verify_all(tx, funding.outputs[:2]) == [True, True]
