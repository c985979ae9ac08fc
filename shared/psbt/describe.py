"""A plain-data description of a PSBT: what it spends, where the money goes, what is present.

Everything is computed from the PSBT's own bytes; nothing a coordinator writes in metadata
is trusted. The same description feeds ``psbt decode`` for ops staff and auditors and,
later, the appliance's review screen.
"""

from __future__ import annotations

from typing import Any

from shared.bitcoin.address import Network, b58check_encode, script_to_address
from shared.bitcoin.bip32 import KeyOrigin
from shared.bitcoin.script import classify
from shared.bitcoin.tx import TxIn, TxOut
from shared.psbt.model import Psbt, PsbtInput


def describe(psbt: Psbt, network: Network) -> dict[str, Any]:
    """JSON-ready summary: inputs, outputs, amounts, fee when known, fields present."""
    tx = psbt.unsigned_tx
    outputs = [
        {
            **_txout(out, network),
            "fields": m.field_names(),
            "bip32_derivations": _origins(m.bip32_derivations),
        }
        for out, m in zip(tx.outputs, psbt.outputs, strict=True)
    ]
    utxos = psbt.input_utxos()
    inputs = [
        _input(inp, txin, utxo, network)
        for inp, txin, utxo in zip(psbt.inputs, tx.inputs, utxos, strict=True)
    ]
    fee = psbt.fee()
    return {
        "psbt_version": psbt.version,
        "network": network.label,
        "unsigned_txid": tx.txid_hex,
        "tx_version": tx.version,
        "locktime": tx.locktime,
        "global_fields": psbt.globals.field_names(),
        "xpubs": {b58check_encode(xpub): str(origin) for xpub, origin in psbt.xpubs.items()},
        "inputs": inputs,
        "outputs": outputs,
        "total_out": sum(out.value for out in tx.outputs),
        "fee": fee,
        "complete": all(inp.is_finalized for inp in psbt.inputs),
    }


def _input(inp: PsbtInput, txin: TxIn, utxo: TxOut | None, network: Network) -> dict[str, Any]:
    """One input's description. Its transaction input and UTXO are looked up once for all
    inputs by the caller: ``psbt.unsigned_tx`` rebuilds the whole transaction, so asking it
    input by input made describing a PSBT quadratic in its inputs."""
    return {
        "prevout": str(txin.prevout),
        "sequence": txin.sequence,
        "utxo": _txout(utxo, network) if utxo else None,
        "fields": inp.field_names(),
        "partial_signatures": sorted(pubkey.hex() for pubkey in inp.partial_sigs),
        "sighash_type": inp.sighash_type,
        "bip32_derivations": _origins(inp.bip32_derivations),
        "finalized": inp.is_finalized,
    }


def _txout(out: TxOut, network: Network) -> dict[str, Any]:
    return {
        "amount": out.value,
        "address": script_to_address(out.script_pubkey, network),
        "type": classify(out.script_pubkey).value,
        "script_pubkey": out.script_pubkey.hex(),
    }


def _origins(derivations: dict[bytes, KeyOrigin]) -> dict[str, str]:
    return {pubkey.hex(): str(origin) for pubkey, origin in sorted(derivations.items())}
