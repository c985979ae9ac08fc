"""Coldstation's exports, read by the libraries other wallets embed (issue 17).

``read_exports.mjs`` runs Coinkite's ``bbqr`` (what a COLDCARD Q speaks), ``@ngraveio/bc-ur``
(UR multipart, as Keystone and many web wallets decode it) and ``@keystonehq/bc-ur-registry``
(crypto-account, crypto-hdkey, crypto-output) on what Coldstation writes, and each test
compares what they saw with the truth. The packages are pinned in ``package-lock.json`` and
installed by ``make test`` (``npm ci``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from shared.bitcoin.address import Network
from shared.bitcoin.bip32 import ExtendedKey
from shared.bitcoin.descriptor import Descriptor
from shared.bitcoin.tx import OutPoint, Transaction, TxIn, TxOut
from shared.key_models import account_from_seed
from shared.psbt import Psbt
from shared.ur.bbqr import split_series
from shared.ur.registry import encode_psbt
from shared.ur.ur import UR, UREncoder
from shared.wallet_formats import interop_files

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "read_exports.mjs"

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not (HERE / "node_modules" / "bbqr").is_dir(),
    reason="node and tests/interop/node_modules are installed by `make test` (npm ci)",
)


def read_elsewhere(bbqr: list[str] = (), urs: dict[str, list[str]] | None = None) -> dict:
    done = subprocess.run(
        ["node", str(SCRIPT)],
        input=json.dumps({"bbqr": list(bbqr), "urs": urs or {}}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _same_key(text: str, xpub: ExtendedKey) -> bool:
    """The same extended key whatever version bytes the reader prints (the Keystone SDK
    prints every key as ``xpub``, testnet ones included)."""
    return ExtendedKey.parse(text).serialize()[4:] == xpub.serialize()[4:]


def test_the_keystone_sdk_reads_a_bip32_wallets_account_hdkey_and_receive_branch():
    _, account = account_from_seed(bytes(range(32)), Network.REGTEST)
    files = interop_files(account.descriptor(), "treasury")
    seen = read_elsewhere(
        urs={n: files[n].split() for n in ("account.ur", "hdkey.ur", "receive.ur")}
    )
    fingerprint = account.origin.fingerprint.hex()
    got = seen["urs"]["account.ur"]
    assert got["type"] == "crypto-account"
    assert got["value"]["master_fingerprint"] == fingerprint
    (entry,) = got["value"]["outputs"]
    assert entry["text"].startswith(f"wpkh({fingerprint}/84'/1'/0'")
    assert _same_key(entry["key"]["xpub"], account.xpub)
    hdkey = seen["urs"]["hdkey.ur"]["value"]
    assert _same_key(hdkey["xpub"], account.xpub)
    assert (hdkey["source_fingerprint"], hdkey["path"]) == (fingerprint, "84'/1'/0'")
    receive = seen["urs"]["receive.ur"]["value"]
    assert receive["text"].endswith("/0/*)") and "*'" not in receive["text"]
    assert _same_key(receive["key"]["xpub"], account.xpub)


def _psbt(inputs: int) -> bytes:
    tx = Transaction(
        inputs=[TxIn(OutPoint(os.urandom(32), i)) for i in range(inputs)],
        outputs=[TxOut(10_000 + i, b"\x00\x14" + os.urandom(20)) for i in range(inputs)],
    )
    return Psbt.from_unsigned_tx(tx).serialize()


@pytest.mark.parametrize("inputs", [1, 30, 200])
@pytest.mark.parametrize("version", [10, 20, 27])
def test_coinkites_bbqr_joins_the_parts_coldstation_writes(inputs, version):
    psbt = _psbt(inputs)
    series = split_series(psbt, "P", min_version=version, max_version=version)
    seen = read_elsewhere(bbqr=list(series.parts))["bbqr"]
    assert seen == {"file_type": "P", "hex": psbt.hex()}


def test_coinkites_bbqr_reads_receipts_and_descriptors_too():
    for data, file_type in ((os.urandom(700), "B"), (b"wpkh([00000000/84h/1h/0h]tpub)", "U")):
        parts = split_series(data, file_type, min_version=12, max_version=12).parts
        assert read_elsewhere(bbqr=list(parts))["bbqr"] == {
            "file_type": file_type,
            "hex": data.hex(),
        }


def test_bc_ur_reassembles_coldstations_multipart_request():
    psbt = _psbt(60)
    parts = UREncoder(UR("crypto-psbt", encode_psbt(Psbt.parse(psbt))), 200).cycle_parts(1.5)
    seen = read_elsewhere(urs={"request": parts})["urs"]["request"]
    assert seen == {"type": "crypto-psbt", "value": {"psbt": psbt.hex()}}


def test_urtypes_reads_the_account_hdkey_and_receive_branch():
    """urtypes (selfcustody: Krux) on the same exports; it crashed on the ranged ``<0;1>/*``
    crypto-output, which is why the receive branch goes out as ``/0/*``."""
    from urtypes.crypto import Account as URAccount
    from urtypes.crypto import HDKey
    from urtypes.crypto import Output as UROutput

    from shared.ur.ur import URDecoder

    _, account = account_from_seed(bytes(range(32)), Network.REGTEST)
    files = interop_files(account.descriptor(), "treasury")

    def cbor(name: str) -> bytes:
        decoder = URDecoder()
        for part in files[name].split():
            decoder.receive(part)
        assert decoder.result is not None
        return bytes(decoder.result.cbor)

    origin = f"[{account.origin.fingerprint.hex()}/84h/1h/0h]"
    read = URAccount.from_cbor(cbor("account.ur"))
    assert read.master_fingerprint == account.origin.fingerprint
    (entry,) = read.output_descriptors
    key_text = entry.descriptor(include_checksum=False)
    assert key_text.startswith("wpkh(") and account.origin.fingerprint.hex() in key_text
    assert _same_key(entry.hd_key().bip32_key(), account.xpub)
    hdkey = HDKey.from_cbor(cbor("hdkey.ur"))
    assert _same_key(hdkey.bip32_key(), account.xpub)
    receive = UROutput.from_cbor(cbor("receive.ur")).descriptor()
    assert receive.replace("'", "h").startswith(f"wpkh({origin}")
    assert Descriptor.parse(receive) == account.descriptor().expand_multipath()[0]
