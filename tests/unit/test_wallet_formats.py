"""Wallets in the forms other wallets write and read (shared.wallet_formats, issue 17).

Cosigner keys arrive as COLDCARD writes them (``ccxp-*.json``, the generic export, with
SLIP-132 ``Vpub``/``Zpub`` keys), as Sparrow writes them (a single-key descriptor), or as a
received ``ur:crypto-account``; each must become the same standard key expression, and a
wrong one must be refused by name. The COLDCARD setup file is refused for what COLDCARD
cannot register (plain keys).
"""

from __future__ import annotations

import json

import pytest

from shared.bitcoin.address import Network, b58check_encode
from shared.bitcoin.bip32 import ExtendedKey, KeyOrigin, parse_path, parse_public_key_any
from shared.bitcoin.descriptor import Descriptor, parse_key
from shared.key_models import account_from_seed
from shared.wallet_formats import (
    WalletFormatError,
    bitcoin_core_request,
    coldcard_multisig_setup,
    cosigner_key,
    wallet_files,
)

BIP48 = "m/48h/1h/0h/2h"
MASTER = ExtendedKey.from_seed(bytes(range(32)), Network.TESTNET)
XPUB = MASTER.derive_path(BIP48).neuter()
FP = MASTER.fingerprint.hex()
EXPECTED = f"[{KeyOrigin(MASTER.fingerprint, parse_path(BIP48)).format('h')}]{XPUB}/<0;1>/*"


def _slip132(key: ExtendedKey, version: int) -> str:
    raw = bytearray(key.serialize())
    raw[:4] = version.to_bytes(4, "big")
    return b58check_encode(bytes(raw))


VPUB = _slip132(XPUB, 0x02575483)
_, ACCOUNT = account_from_seed(bytes(range(1, 33)), Network.REGTEST)
OTHER = f"[{ACCOUNT.origin.format('h')}]{ACCOUNT.xpub}/<0;1>/*"


def test_a_coldcard_multisig_xpub_export_becomes_the_standard_key_expression():
    ccxp = {
        "p2sh_deriv": "m/45'",
        "p2sh": str(MASTER.derive_path("m/45h").neuter()),
        "p2wsh_deriv": "m/48'/1'/0'/2'",
        "p2wsh": VPUB,
        "account": "0",
        "xfp": FP.upper(),
    }
    assert cosigner_key(json.dumps(ccxp)) == EXPECTED


def test_a_coldcard_generic_export_gives_its_bip48_p2wsh_key():
    generic = {"chain": "XTN", "xfp": FP.upper(), "bip48_2": {"xpub": VPUB, "deriv": BIP48}}
    assert cosigner_key(json.dumps(generic)) == EXPECTED


@pytest.mark.parametrize(
    "text",
    [
        EXPECTED,
        f"wpkh({EXPECTED})",  # Sparrow's single-key descriptor text
        f"wpkh([{FP}/48'/1'/0'/2']{XPUB})",  # a bare account xpub: children added
        EXPECTED.replace(str(XPUB), VPUB),  # a SLIP-132 key inside a key expression
        json.dumps(
            {
                "master_fingerprint": FP,
                "outputs": [{"descriptor": f"wsh(cosigner({EXPECTED[:-8]}))"}],
            }
        ),
    ],
)
def test_every_form_of_one_cosigner_reads_as_one_key(text):
    assert parse_key(cosigner_key(text)) == parse_key(EXPECTED)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not JSON"),
        (json.dumps({"p2wsh": VPUB}), "no master fingerprint"),
        (json.dumps({"xfp": FP, "p2sh": VPUB, "p2sh_deriv": "m/45'"}), "no P2WSH multisig key"),
        (json.dumps({"xfp": FP, "p2wsh": VPUB, "p2wsh_deriv": "m/48'/1'/0'"}), "depth"),
        (json.dumps({"xfp": "zz", "p2wsh": VPUB, "p2wsh_deriv": BIP48}), "COLDCARD export"),
        (json.dumps({"xfp": FP, "p2wsh": 7, "p2wsh_deriv": BIP48}), "must be text"),
        (f"wsh(sortedmulti(1,{EXPECTED},{EXPECTED.replace('<0;1>', '<2;3>')}))", "2 keys"),
        (
            "xprv9s21ZrQH143K3QTDL4LXw2F7HEK3wJUD2nW2nRk4stbPy6cq3jPPqjiChkVvvNKmPGJxWUtg6LnF5kejMRNNU3TGtRBeJgk33yuGBxrMPHi",
            "not a cosigner key",
        ),
        (json.dumps({"outputs": [{"descriptor": "wpkh(02aa)"}]}), "no wsh cosigner"),
        ("x" * 30_000, "longer than"),
        ('{"":' * 3_000 + "1" + "}" * 3_000, "not JSON"),  # a nesting bomb, under the limit
    ],
)
def test_a_wrong_cosigner_export_is_refused_by_name(text, message):
    with pytest.raises(WalletFormatError, match=message):
        cosigner_key(text)


def test_slip132_private_keys_are_refused():
    private = MASTER.derive_path(BIP48)
    with pytest.raises(ValueError, match="vprv keys are not accepted"):
        parse_public_key_any(_slip132(private, 0x045F18BC))


def _vault(*keys: str) -> Descriptor:
    return Descriptor.parse(f"wsh(sortedmulti(2,{','.join(keys)}))", require_checksum=False)


def test_the_coldcard_setup_file_lists_every_cosigner_by_fingerprint_and_path():
    a = ACCOUNT
    text = coldcard_multisig_setup("vault", _vault(EXPECTED, OTHER))
    assert "Name: vault\nPolicy: 2 of 2\nFormat: P2WSH\n" in text
    assert f"Derivation: m/48'/1'/0'/2'\n{FP.upper()}: {XPUB}\n" in text
    assert f"Derivation: m/84'/1'/0'\n{a.origin.fingerprint.hex().upper()}: {a.xpub}\n" in text


@pytest.mark.parametrize(
    ("descriptor", "name", "message"),
    [
        (_vault(EXPECTED, "02" + XPUB.public_key.hex()[2:]), "vault", "plain key"),
        (_vault(EXPECTED, EXPECTED.replace("<0;1>/*", "*")), "vault", "key 2"),
        (_vault(EXPECTED, EXPECTED.replace("<0;1>", "0/<0;1>")), "vault", "key 2"),
        (_vault(EXPECTED, EXPECTED.replace("<0;1>", "5")), "vault", "xpub"),
        (_vault(EXPECTED, OTHER), "a" * 21, "1..20 characters"),
    ],
)
def test_what_coldcard_cannot_register_is_refused(descriptor, name, message):
    with pytest.raises(WalletFormatError, match=message):
        coldcard_multisig_setup(name, descriptor)


def test_bitcoin_core_gets_receive_and_change_and_a_pool_in_one_import():
    _, account = account_from_seed(bytes(range(32)), Network.REGTEST)
    ranged = bitcoin_core_request(account.descriptor(), "t")
    assert [r["internal"] for r in ranged] == [False, True]
    # watched, never an issuer: Core's getnewaddress must not hand out what the coordinator does
    assert all(r["range"] == [0, 999] and r["active"] is False for r in ranged)
    pool = [
        Descriptor.parse(
            f"wpkh({MASTER.derive_path([n]).public_key.hex()})", require_checksum=False
        )
        for n in range(3)
    ]
    request = json.loads(wallet_files(pool, "t")["bitcoin-core.json"])
    assert len(request) == 3 and all("range" not in r for r in request)
    assert all(Descriptor.parse(r["desc"]) in pool for r in request)
