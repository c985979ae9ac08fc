"""A 2-of-3 ``wsh(sortedmulti)`` wallet from xpubs, end to end through PSBT and Bitcoin Core.

Three cosigners with their own seeds; the descriptor alone tells the coordinator the
scripts and key origins; each cosigner finds its key by origin, signs, and the combined,
finalized spend is valid to libbitcoinkernel.
"""

from __future__ import annotations

import hashlib

from shared.bitcoin.address import Network, address_to_script
from shared.bitcoin.bip32 import ExtendedKey, KeyOrigin
from shared.bitcoin.descriptor import Descriptor
from shared.bitcoin.tx import OutPoint, Transaction, TxIn, TxOut
from shared.psbt import Psbt, combine, extract, finalize
from shared.psbt.signer import sign_psbt
from tests.kernel import verify_all

ACCOUNT = "m/48'/1'/0'/2'"


def _cosigner(name: str) -> ExtendedKey:
    return ExtendedKey.from_seed(hashlib.sha256(name.encode()).digest(), Network.TESTNET)


def _descriptor(masters: list[ExtendedKey]) -> Descriptor:
    keys = ",".join(
        f"[{m.fingerprint.hex()}{ACCOUNT[1:]}]{m.derive_path(ACCOUNT).neuter().to_base58()}/<0;1>/*"
        for m in masters
    )
    return Descriptor.parse(f"wsh(sortedmulti(2,{keys}))", require_checksum=False)


def _secret_for(master: ExtendedKey, origin: KeyOrigin) -> bytes | None:
    if origin.fingerprint != master.fingerprint:
        return None
    return master.derive_path(origin.path).key


def test_cosigners_sign_by_key_origin_and_core_accepts_the_spend():
    masters = [_cosigner(f"cosigner {i}") for i in range(3)]
    wallet = _descriptor(masters)
    receive = wallet.derive(7)
    change = wallet.derive(0, change=True)
    assert str(Descriptor.parse(str(wallet))) == str(wallet)

    funding = Transaction(
        inputs=[TxIn(OutPoint(bytes(32), 0xFFFFFFFF), b"\x51")],
        outputs=[TxOut(5_000_000, receive.script_pubkey)],
    )
    payee = address_to_script("tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx", Network.TESTNET)
    spend = Transaction(
        inputs=[TxIn(OutPoint(funding.txid, 0), sequence=0xFFFFFFFD)],
        outputs=[TxOut(1_000_000, payee), TxOut(3_998_000, change.script_pubkey)],
    )
    psbt = Psbt.from_unsigned_tx(spend)
    psbt.inputs[0].set(0x00, funding.serialize())
    psbt.inputs[0].set(0x01, funding.outputs[0].serialize())
    psbt.inputs[0].set(0x05, receive.witness_script)
    for pubkey, origin in receive.keys:
        psbt.inputs[0].set(0x06, origin.to_psbt_bytes(), keydata=pubkey)
    for pubkey, origin in change.keys:
        psbt.outputs[1].set(0x02, origin.to_psbt_bytes(), keydata=pubkey)
    psbt.outputs[1].set(0x01, change.witness_script)
    assert psbt.fee() == 2_000

    partials = []
    for master in masters[1:]:  # the first cosigner is away: 2 of 3 is enough
        secrets = [
            s
            for o in psbt.inputs[0].bip32_derivations.values()
            if (s := _secret_for(master, o)) is not None
        ]
        assert len(secrets) == 1
        signed, added = sign_psbt(psbt, secrets)
        assert added == 1
        partials.append(signed)

    result = finalize(combine(partials))
    assert result.complete, result.problems
    tx = extract(result.psbt)
    assert verify_all(tx, funding.outputs) == [True]
