"""Descriptor tests against published vectors.

Sources: BIP-380 (checksum and key-expression vectors), BIP-382 (wpkh), BIP-383
(multi/sortedmulti), BIP-389 (multipath), BIP-67 (sorted multisig scripts), BIP-84 and BIP-49
(addresses of the abandon...about seed), BIP-174 (Updater witness script and key origins),
and Bitcoin Core's descriptor_tests.cpp and rpc_deriveaddresses.py.
Expected scripts and addresses are copied from those texts; where a vector is a bare or
legacy form Coldstation does not accept, it is wrapped in wsh() and the witness script is
compared (the P2WSH hash is recomputed here with hashlib, not with the code under test).
"""

from __future__ import annotations

import hashlib
import time

import pytest
from coincurve import PrivateKey

from shared.bitcoin.address import Network, b58check_decode, b58check_encode, wif_to_private_key
from shared.bitcoin.bip32 import HARDENED, ExtendedKey, KeyOrigin
from shared.bitcoin.descriptor import (
    Descriptor,
    DescriptorError,
    ScriptType,
    add_checksum,
    descriptor_checksum,
    parse_descriptor,
    split_checksum,
)

H = HARDENED

# Keys used by the BIP-380..389 vectors.
PK_A34B = "03a34b99f22c790c4e36b2b3c2c35a36db06226e41c692fc82b8b56ac1c540c5bd"
PK_A34B_UNCOMPRESSED = (
    "04a34b99f22c790c4e36b2b3c2c35a36db06226e41c692fc82b8b56ac1c540c5bd5b8dec5235a0fa8722476c"
    "7709c02559e3aa73aa03918ba2d492eea75abea235"
)
PK_0260 = "0260b2003c386519fc9eadf2b5cf124dd8eea4c4e68d5e154050a9346ea98ce600"
WIF_A34B = "L4rK1yDtCWekvXuE6oXD9jCYfFNV2cWRpVuPLBcCU2z8TrisoyY1"
WIF_A34B_UNCOMPRESSED = "5KYZdUEo39z3FPrtuX2QbbwGnNP5zTd7yyr2SC1j299sBCnWjss"
XPUB_6ERA = (
    "xpub6ERApfZwUNrhLCkDtcHTcxd75RbzS1ed54G1LkBUHQVHQKqhMkhgbmJbZRkrgZw4koxb5JaHWkY4ALHY2grBGR"
    "jaDMzQLcgJvLJuZZvRcEL"
)
XPRV_A1RP = (
    "xprvA1RpRA33e1JQ7ifknakTFpgNXPmW2YvmhqLQYMmrj4xJXXWYpDPS3xz7iAxn8L39njGVyuoseXzU6rcxFLJ8HF"
    "sTjSyQbLYnMpCqE2VbFWc"
)
XPUB_68NZ = (
    "xpub68NZiKmJWnxxS6aaHmn81bvJeTESw724CRDs6HbuccFQN9Ku14VQrADWgqbhhTHBaohPX4CjNLf9fq9MYo6oDa"
    "PPLPxSb7gwQN3ih19Zm4Y"
)
XPUB_69H7 = (
    "xpub69H7F5d8KSRgmmdJg2KhpAK8SR3DjMwAdkxj3ZuxV27CprR9LgpeyGmXUbC6wb7ERfvrnKZjXoUmmDznezpbZb"
    "7ap6r1D3tgFxHmwMkQTPH"
)
XPUB_661_FW31 = (
    "xpub661MyMwAqRbcFW31YEwpkMuc5THy2PSt5bDMsktWQcFF8syAmRUapSCGu8ED9W6oDMSgv6Zz8idoc4a6mr8BDz"
    "TJY47LJhkJ8UB7WEGuduB"
)
XPUB_661_GDZQ = (
    "xpub661MyMwAqRbcGDZQUKLqmWodYLcoBQnQH33yYkkF3jjxeLvY8qr2wWGEWkiKFaaQfJCoi3HeEq3Dc5DptfbCyj"
    "D38fNhSqtKc1UHaP4ba3t"
)
#: Child of XPUB_6ERA in BIP-32 vector 2 (m/0/2147483647h/1/2147483646h/2): its serialized
#: parent fingerprint is XPUB_6ERA's fingerprint.
XPUB_6FNC = (
    "xpub6FnCn6nSzZAw5Tw7cgR9bi15UV96gLZhjDstkXXxvCLsUXBGXPdSnLFbdpq8p9HmGsApME5hQTZ3emM2rnY5ag"
    "b9rXpVGyy3bdW6EEgAtqt"
)
#: Core's rpc_deriveaddresses key.
TPUB_CORE = (
    "tpubD6NzVbkrYhZ4WaWSyoBvQwbpLkojyoTZPRsgXELWz3Popb3qkjcJyJUGLnL4qHHoQvao8ESaAstxYSnhyswJ76"
    "uZPStJRJCTKvosUCJZL5B"
)

#: BIP-383: sh(wsh(multi(16, ...))) -> a9147fc63e13dc25e8a95a3cee3d9a714ac3afd96f1e87
KEYS_16 = [
    "03669b8afcec803a0d323e9a17f3ea8e68e8abe5a278020a929adbec52421adbd0",
    "0260b2003c386519fc9eadf2b5cf124dd8eea4c4e68d5e154050a9346ea98ce600",
    "0362a74e399c39ed5593852a30147f2959b56bb827dfa3e60e464b02ccf87dc5e8",
    "0261345b53de74a4d721ef877c255429961b7e43714171ac06168d7e08c542a8b8",
    "02da72e8b46901a65d4374fe6315538d8f368557dda3a1dcf9ea903f3afe7314c8",
    "0318c82dd0b53fd3a932d16e0ba9e278fcc937c582d5781be626ff16e201f72286",
    "0297ccef1ef99f9d73dec9ad37476ddb232f1238aff877af19e72ba04493361009",
    "02e502cfd5c3f972fe9a3e2a18827820638f96b6f347e54d63deb839011fd5765d",
    "03e687710f0e3ebe81c1037074da939d409c0025f17eb86adb9427d28f0f7ae0e9",
    "02c04d3a5274952acdbc76987f3184b346a483d43be40874624b29e3692c1df5af",
    "02ed06e0f418b5b43a7ec01d1d7d27290fa15f75771cb69b642a51471c29c84acd",
    "036d46073cbb9ffee90473f3da429abc8de7f8751199da44485682a989a4bebb24",
    "02f5d1ff7c9029a80a4e36b9a5497027ef7f3e73384a4a94fbfe7c4e9164eec8bc",
    "02e41deffd1b7cce11cde209a781adcffdabd1b91c0ba0375857a2bfd9302419f3",
    "02d76625f7956a7fc505ab02556c23ee72d832f1bac391bcd2d3abce5710a13d06",
    "0399eb0a5487515802dc14544cf10b3666623762fbed2ec38a3975716e2c29c232",
]
#: BIP-383: wsh(multi(20, these WIFs)) and sh(wsh(...)) of it.
WIFS_20 = [
    "KzoAz5CanayRKex3fSLQ2BwJpN7U52gZvxMyk78nDMHuqrUxuSJy",
    "KwGNz6YCCQtYvFzMtrC6D3tKTKdBBboMrLTsjr2NYVBwapCkn7Mr",
    "KxogYhiNfwxuswvXV66eFyKcCpm7dZ7TqHVqujHAVUjJxyivxQ9X",
    "L2BUNduTSyZwZjwNHynQTF14mv2uz2NRq5n5sYWTb4FkkmqgEE9f",
    "L1okJGHGn1kFjdXHKxXjwVVtmCMR2JA5QsbKCSpSb7ReQjezKeoD",
    "KxDCNSST75HFPaW5QKpzHtAyaCQC7p9Vo3FYfi2u4dXD1vgMiboK",
    "L5edQjFtnkcf5UWURn6UuuoFrabgDQUHdheKCziwN42aLwS3KizU",
    "KzF8UWFcEC7BYTq8Go1xVimMkDmyNYVmXV5PV7RuDicvAocoPB8i",
    "L3nHUboKG2w4VSJ5jYZ5CBM97oeK6YuKvfZxrefdShECcjEYKMWZ",
    "KyjHo36dWkYhimKmVVmQTq3gERv3pnqA4xFCpvUgbGDJad7eS8WE",
    "KwsfyHKRUTZPQtysN7M3tZ4GXTnuov5XRgjdF2XCG8faAPmFruRF",
    "KzCUbGhN9LJhdeFfL9zQgTJMjqxdBKEekRGZX24hXdgCNCijkkap",
    "KzgpMBwwsDLwkaC5UrmBgCYaBD2WgZ7PBoGYXR8KT7gCA9UTN5a3",
    "KyBXTPy4T7YG4q9tcAM3LkvfRpD1ybHMvcJ2ehaWXaSqeGUxEdkP",
    "KzJDe9iwJRPtKP2F2AoN6zBgzS7uiuAwhWCfGdNeYJ3PC1HNJ8M8",
    "L1xbHrxynrqLKkoYc4qtoQPx6uy5qYXR5ZDYVYBSRmCV5piU3JG9",
    "KzRedjSwMggebB3VufhbzpYJnvHfHe9kPJSjCU5QpJdAW3NSZxYS",
    "Kyjtp5858xL7JfeV4PNRCKy2t6XvgqNNepArGY9F9F1SSPqNEMs3",
    "L2D4RLHPiHBidkHS8ftx11jJk1hGFELvxh8LoxNQheaGT58dKenW",
    "KyLPZdwY4td98bKkXqEXTEBX3vwEYTQo1yyLjX2jKXA63GBpmSjv",
]

#: BIP-67 vectors: (keys in given order, sorted 2-of-n script).
BIP67 = [
    (
        [
            "02ff12471208c14bd580709cb2358d98975247d8765f92bc25eab3b2763ed605f8",
            "02fe6f0a5a297eb38c391581c4413e084773ea23954d93f7753db7dc0adc188b2f",
        ],
        "522102fe6f0a5a297eb38c391581c4413e084773ea23954d93f7753db7dc0adc188b2f2102ff12471208c14b"
        "d580709cb2358d98975247d8765f92bc25eab3b2763ed605f852ae",
    ),
    (
        [
            "02632b12f4ac5b1d1b72b2a3b508c19172de44f6f46bcee50ba33f3f9291e47ed0",
            "027735a29bae7780a9755fae7a1c4374c656ac6a69ea9f3697fda61bb99a4f3e77",
            "02e2cc6bd5f45edd43bebe7cb9b675f0ce9ed3efe613b177588290ad188d11b404",
        ],
        "522102632b12f4ac5b1d1b72b2a3b508c19172de44f6f46bcee50ba33f3f9291e47ed021027735a29bae7780"
        "a9755fae7a1c4374c656ac6a69ea9f3697fda61bb99a4f3e772102e2cc6bd5f45edd43bebe7cb9b675f0ce9e"
        "d3efe613b177588290ad188d11b40453ae",
    ),
    (
        [
            "030000000000000000000000000000000000004141414141414141414141414141",
            "020000000000000000000000000000000000004141414141414141414141414141",
            "020000000000000000000000000000000000004141414141414141414141414140",
            "030000000000000000000000000000000000004141414141414141414141414140",
        ],
        "522102000000000000000000000000000000000000414141414141414141414141414021020000000000000000"
        "000000000000000000004141414141414141414141414141210300000000000000000000000000000000000041"
        "414141414141414141414141402103000000000000000000000000000000000000414141414141414141414141"
        "414154ae",
    ),
    (
        [
            "022df8750480ad5b26950b25c7ba79d3e37d75f640f8e5d9bcd5b150a0f85014da",
            "03e3818b65bcc73a7d64064106a859cc1a5a728c4345ff0b641209fba0d90de6e9",
            "021f2f6e1e50cb6a953935c3601284925decd3fd21bc445712576873fb8c6ebc18",
        ],
        "5221021f2f6e1e50cb6a953935c3601284925decd3fd21bc445712576873fb8c6ebc1821022df8750480ad5b"
        "26950b25c7ba79d3e37d75f640f8e5d9bcd5b150a0f85014da2103e3818b65bcc73a7d64064106a859cc1a5a"
        "728c4345ff0b641209fba0d90de6e953ae",
    ),
]


def p2wsh_hex(witness_script_hex: str) -> str:
    """Independent P2WSH scriptPubKey: OP_0 <sha256(witness script)>."""
    return "0020" + hashlib.sha256(bytes.fromhex(witness_script_hex)).hexdigest()


def hash160_hex(data: bytes) -> str:
    return hashlib.new("ripemd160", hashlib.sha256(data).digest()).hexdigest()


def parse(text: str) -> Descriptor:
    return Descriptor.parse(text, require_checksum=False)


def slip132_to_standard(text: str, version: int) -> str:
    """Swap SLIP-132 version bytes for xpub/tpub (the key material is unchanged)."""
    return b58check_encode(version.to_bytes(4, "big") + b58check_decode(text)[4:])


# -- BIP-380 checksum ---------------------------------------------------------------------


def test_bip380_valid_checksum() -> None:
    assert descriptor_checksum("raw(deadbeef)") == "89f8spxm"
    assert add_checksum("raw(deadbeef)") == "raw(deadbeef)#89f8spxm"
    assert split_checksum("raw(deadbeef)#89f8spxm") == "raw(deadbeef)"
    assert split_checksum("raw(deadbeef)", require_checksum=False) == "raw(deadbeef)"


@pytest.mark.parametrize(
    ("text", "reason"),
    [  # BIP-380 checksum vectors
        ("raw(deadbeef)", "missing descriptor checksum"),
        ("raw(deadbeef)#", "must be 8 characters, not 0"),
        ("raw(deadbeef)#89f8spxmx", "must be 8 characters, not 9"),
        ("raw(deadbeef)#89f8spx", "must be 8 characters, not 7"),
        ("raw(deedbeef)#89f8spxm", "bad descriptor checksum"),
        ("raw(deedbeef)##9f8spxm", "multiple '#'"),
        ("raw(Ü)#00000000", "invalid character"),
    ],
)
def test_bip380_checksum_refusals(text: str, reason: str) -> None:
    with pytest.raises(DescriptorError, match=reason):
        split_checksum(text)


def test_core_checksum_vectors() -> None:
    # descriptor_tests.cpp "Checksums": the same sh(multi()) with private and public keys.
    prv = (
        f"sh(multi(2,[00000000/111'/222]{XPRV_A1RP},"
        "xprv9uPDJpEQgRQfDcW7BkF7eTya6RPxXeJCqCJGHuCJ4GiRVLzkTXBAJMu2qaMWPrS7AANYqdq6vcBcBUdJCVVFce"
        "UvJFjaPdGZ2y9WACViL4L/0))"
    )
    pub = f"sh(multi(2,[00000000/111'/222]{XPUB_6ERA},{XPUB_68NZ}/0))"
    assert descriptor_checksum(prv) == "ggrsrxfy"
    assert descriptor_checksum(pub) == "tjg09x5t"
    assert descriptor_checksum(pub.replace("multi(2", "multi(3")) == "d4x0uxyv"


def test_core_deriveaddresses_with_checksum() -> None:
    text = f"wpkh({TPUB_CORE}/1/1/0)#s9ga3alw"
    desc = Descriptor.parse(text)
    assert str(desc) == text
    assert desc.address(0, Network.REGTEST) == "bcrt1qjqmxmkpmxt80xz4y3746zgt0q3u3ferr34acd5"
    assert not desc.is_ranged
    with pytest.raises(DescriptorError, match="missing descriptor checksum"):
        Descriptor.parse(text[:-9])
    with pytest.raises(DescriptorError, match="bad descriptor checksum"):
        Descriptor.parse(text[:-1] + "x")
    with pytest.raises(DescriptorError, match="bad descriptor checksum"):
        Descriptor.parse(text.replace("/1/1/0", "/1/1/1"))


def test_core_deriveaddresses_ranged() -> None:
    desc = parse(f"wpkh({TPUB_CORE}/1/1/*)")
    assert desc.is_ranged
    addresses = [desc.address(i, Network.REGTEST) for i in range(3)]
    assert addresses == [
        "bcrt1qjqmxmkpmxt80xz4y3746zgt0q3u3ferr34acd5",
        "bcrt1qhku5rq7jz8ulufe2y6fkcpnlvpsta7rq4442dy",
        "bcrt1qpgptk2gvshyl0s9lqshsmx932l9ccsv265tvaq",
    ]


def test_core_deriveaddresses_p2sh_p2wpkh() -> None:
    # combo() of the same key lists its P2SH-P2WPKH address; sh(wpkh()) must give it.
    desc = parse(f"sh(wpkh({TPUB_CORE}/1/1/0))")
    assert desc.script_type is ScriptType.SH_WPKH
    assert desc.address(0, Network.REGTEST) == "2NDvEwGfpEqJWfybzpKPHF2XH3jwoQV3D7x"


def test_core_hardened_without_private_key_is_refused() -> None:
    with pytest.raises(DescriptorError, match="hardened derivation step"):
        parse(f"wpkh({TPUB_CORE}/1'/1/0)")


# -- BIP-380 key expressions --------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        PK_0260,
        f"[deadbeef/0h/0h/0h]{PK_0260}",
        f"[deadbeef/0'/0'/0']{PK_0260}",
        XPUB_6ERA,
        f"[deadbeef/0h/1h/2h]{XPUB_6ERA}",
        f"[deadbeef/0h/1h/2h]{XPUB_6ERA}/3/4/5",
        f"[deadbeef/0h/1h/2h]{XPUB_6ERA}/3/4/5/*",
    ],
)
def test_bip380_valid_public_keys_round_trip(key: str) -> None:
    desc = parse(f"wpkh({key})")
    assert str(desc) == add_checksum(f"wpkh({key})")
    assert Descriptor.parse(str(desc)) == desc


def test_bip380_mixed_hardened_markers_use_apostrophe() -> None:
    desc = parse(f"wpkh([deadbeef/0'/0h/0']{PK_0260})")
    assert desc.body() == f"wpkh([deadbeef/0'/0'/0']{PK_0260})"
    assert desc.keys[0].origin == KeyOrigin(bytes.fromhex("deadbeef"), [H, H, H])


@pytest.mark.parametrize(
    ("key", "reason"),
    [  # BIP-380 invalid key expressions (inside wpkh())
        (f"[deadbeef/0h/0h/0h/*]{PK_0260}", "not allowed in a key origin"),
        (f"[deadbeef/0h/0h/0h/]{PK_0260}", "empty element in key origin"),
        (f"[deadbef/0h/0h/0h]{PK_0260}", "7 characters, not 8"),
        (f"[deadbeeef/0h/0h/0h]{PK_0260}", "9 characters, not 8"),
        (f"[deadbeef/0f/0f/0f]{PK_0260}", "invalid path element '0f'"),
        (f"[deadbeef/-0/-0/-0]{PK_0260}", "invalid path element '-0'"),
        (f"[deadbeef/0H/0H/0H]{PK_0260}", "invalid path element '0H'"),
        (f"{WIF_A34B}/0", "private keys are not accepted"),
        (f"{WIF_A34B}/*", "private keys are not accepted"),
        (f"{XPUB_661_FW31}/2147483648", "out of range"),
        (f"{XPUB_661_FW31}/1aa", "invalid path element '1aa'"),
        (f"[aaaaaaaa][aaaaaaaa]{XPUB_661_FW31}/2147483647'/0", "multiple key origins"),
        (f"aaaaaaaa]{XPUB_661_FW31}/2147483647'/0", "without a start"),
        (f"[gaaaaaaa]{XPUB_661_FW31}/0", "is not hex"),
        ("[deadbeef]", "no key"),
        # valid in BIP-380, refused by Coldstation: hardened steps/wildcards after an xpub
        (f"{XPUB_6ERA}/3h/4h/5h/*", "hardened derivation step"),
        (f"{XPUB_6ERA}/3h/4h/5h/*h", "hardened"),
        (f"{XPUB_6ERA}/3/*'", "hardened wildcard"),
        # valid in BIP-380, refused by Coldstation: private keys
        (XPRV_A1RP, "extended private keys are not accepted"),
        (f"[deadbeef/0h/1h/2h]{XPRV_A1RP}/3/4/5/*", "extended private keys are not accepted"),
        (WIF_A34B, "private keys are not accepted"),
    ],
)
def test_bip380_invalid_keys(key: str, reason: str) -> None:
    with pytest.raises(DescriptorError, match=reason):
        parse(f"wpkh({key})")


@pytest.mark.parametrize(
    ("text", "reason"),
    [  # descriptor_tests.cpp CheckUnparsable cases (public-key forms)
        (
            "sh(wpkh(03a34b99f22c790c4e36b2b3c2c35a36db06226e41c692fc82b8b56ac1c540c5))",
            "is not valid",
        ),
        (f"wpkh(deadbeef/1/2'/3/4']{PK_A34B})", "without a start"),
        (f"wpkh([deadbeef]/1/2'/3/4']{PK_A34B})", "multiple key origins"),
        (f"wpkh([012345678]{XPUB_6ERA})", "9 characters, not 8"),
        (f"wsh(multi(2,[aaaaaaa]{XPUB_661_FW31}/0,{XPUB_69H7}/1/2/*))", "7 characters"),
        (f"wsh(multi(2,[aaagaaaa]{XPUB_661_FW31}/0,{XPUB_69H7}/1/2/*))", "is not hex"),
        (f"wsh(multi(2,[aaaaaaaa],{XPUB_69H7}/1/2/*))", "no key"),
        (f"wsh(multi(a,{PK_A34B},{PK_0260}))", "threshold 'a' is not a number"),
        (f"wsh(multi(0,{PK_A34B},{PK_0260}))", "at least 1"),
        (f"wsh(multi(3,{PK_A34B},{PK_0260}))", "threshold 3 is larger than 2 keys"),
        (f"sh({PK_A34B})", "sh\\(\\) needs a script"),
        (f"wsh({PK_A34B})", "wsh\\(\\) needs a script"),
        (f"wsh(wpkh({PK_A34B}))", "wpkh\\(\\) cannot be inside wsh\\(\\)"),
        (f"wsh(sh(wpkh({PK_A34B})))", "sh\\(\\) can only be used at top level"),
        (f"sh(sh(wpkh({PK_A34B})))", "sh\\(\\) can only be used at top level"),
        (f"wsh(wsh(multi(1,{PK_A34B})))", "wsh\\(\\) cannot be inside wsh\\(\\)"),
        (f"wsh(multi(2,{PK_A34B},{PK_A34B_UNCOMPRESSED}))", "uncompressed"),
    ],
)
def test_core_unparsable(text: str, reason: str) -> None:
    with pytest.raises(DescriptorError, match=reason):
        parse(text)


# -- BIP-382 ------------------------------------------------------------------------------


def test_bip382_wpkh_pubkey() -> None:
    out = parse(f"wpkh({PK_A34B})").derive(0)
    assert out.script_pubkey.hex() == "00149a1c78a507689f6f54b847ad1cef1e614ee23f1e"
    assert out.witness_script is None and out.redeem_script is None
    pubkey, origin = out.keys[0]
    assert pubkey.hex() == PK_A34B
    # no origin given: Core records the key's own fingerprint and an empty path
    assert origin == KeyOrigin(bytes.fromhex(hash160_hex(pubkey)[:8]), [])


def test_core_sh_wpkh_pubkey() -> None:
    out = parse(f"sh(wpkh({PK_A34B}))").derive(0)
    assert out.script_pubkey.hex() == "a91484ab21b1b2fd065d4504ff693d832434b6108d7b87"
    assert out.redeem_script is not None
    assert out.redeem_script.hex() == "00149a1c78a507689f6f54b847ad1cef1e614ee23f1e"


def test_bip382_wpkh_ranged_xpub_with_origin() -> None:
    text = f"wpkh([ffffffff/13']{XPUB_69H7}/1/2/*)"
    desc = parse(text)
    assert str(desc) == add_checksum(text)
    expected = [
        "0014326b2249e3a25d5dc60935f044ee835d090ba859",
        "0014af0bd98abc2f2cae66e36896a39ffe2d32984fb7",
        "00141fa798efd1cbf95cebf912c031b8a4a6e9fb9f27",
    ]
    for index, script in enumerate(expected):
        out = desc.derive(index)
        assert out.script_pubkey.hex() == script
        # descriptor_tests.cpp expects paths {0x8000000D, 1, 2, i} under ffffffff
        assert out.keys[0][1] == KeyOrigin(b"\xff" * 4, [13 + H, 1, 2, index])
        assert out.keys[0][1].to_psbt_bytes().hex() == (
            "ffffffff0d000080" + "01000000" + "02000000" + index.to_bytes(4, "little").hex()
        )


@pytest.mark.parametrize(
    ("text", "reason"),
    [  # BIP-382 invalid descriptors
        (f"wpkh({WIF_A34B_UNCOMPRESSED})", "private keys are not accepted"),
        (f"sh(wpkh({WIF_A34B_UNCOMPRESSED}))", "private keys are not accepted"),
        (f"wpkh({PK_A34B_UNCOMPRESSED})", "uncompressed public keys are not allowed"),
        (f"sh(wpkh({PK_A34B_UNCOMPRESSED}))", "uncompressed public keys are not allowed"),
        (f"wsh(pk({PK_A34B_UNCOMPRESSED}))", "pk\\(\\) inside wsh\\(\\) is not supported"),
        (f"wsh(wpkh({PK_A34B}))", "wpkh\\(\\) cannot be inside wsh\\(\\)"),
        (f"wsh(wsh(pkh({PK_A34B})))", "wsh\\(\\) cannot be inside wsh\\(\\)"),
        (f"sh(wsh(wsh(pkh({PK_A34B}))))", "wsh\\(\\) cannot be inside wsh\\(\\)"),
        (f"wpkh(wsh(pkh({PK_A34B})))", "expected a key, found a script"),
        (f"wsh({PK_A34B})", "wsh\\(\\) needs a script"),
    ],
)
def test_bip382_invalid(text: str, reason: str) -> None:
    with pytest.raises(DescriptorError, match=reason):
        parse(text)


# -- BIP-383 ------------------------------------------------------------------------------


def test_bip383_sortedmulti_xpubs() -> None:
    text = f"wsh(sortedmulti(2,{XPUB_6ERA}/*,{XPUB_68NZ}/0/0/*))"
    desc = parse(text)
    assert str(desc) == add_checksum(text)
    assert desc.is_ranged and desc.sorted_multi and desc.threshold == 2
    expected = [
        "5221025d5fc65ebb8d44a5274b53bac21ff8307fec2334a32df05553459f8b1f7fe1b62102fbd47cc8034098"
        "f0e6a94c6aeee8528abf0a2153a5d8e46d325b7284c046784652ae",
        "52210264fd4d1f5dea8ded94c61e9641309349b62f27fbffe807291f664e286bfbe6472103f4ece6dfccfa37"
        "b211eb3d0af4d0c61dba9ef698622dc17eecdf764beeb005a652ae",
        "5221022ccabda84c30bad578b13c89eb3b9544ce149787e5b538175b1d1ba259cbb83321024d902e1a2fc7a8"
        "755ab5b694c575fce742c48d9ff192e63df5193e4c7afe1f9c52ae",
    ]
    fp_6era = ExtendedKey.parse(XPUB_6FNC).parent_fingerprint
    fp_68nz = bytes.fromhex(hash160_hex(ExtendedKey.parse(XPUB_68NZ).key)[:8])
    for index, witness_script in enumerate(expected):
        out = desc.derive(index)
        assert out.witness_script is not None
        assert out.witness_script.hex() == witness_script
        assert out.script_pubkey.hex() == p2wsh_hex(witness_script)
        origins = {origin for _, origin in out.keys}
        assert origins == {KeyOrigin(fp_6era, [index]), KeyOrigin(fp_68nz, [0, 0, index])}
        # keys are listed in script (sorted) order
        assert [pk.hex() for pk, _ in out.keys] == [witness_script[4:70], witness_script[72:138]]


def test_bip383_multisig_16_and_20_keys() -> None:
    out = parse(f"sh(wsh(multi(16,{','.join(KEYS_16)})))").derive(0)
    assert out.script_pubkey.hex() == "a9147fc63e13dc25e8a95a3cee3d9a714ac3afd96f1e87"
    keys_20 = [
        PrivateKey(wif_to_private_key(wif).secret).public_key.format().hex() for wif in WIFS_20
    ]
    wsh = parse(f"wsh(multi(20,{','.join(keys_20)}))").derive(0)
    assert wsh.script_pubkey.hex() == (
        "0020376bd8344b8b6ebe504ff85ef743eaa1aa9272178223bcb6887e9378efb341ac"
    )
    sh_wsh = parse(f"sh(wsh(multi(20,{','.join(keys_20)})))").derive(0)
    assert sh_wsh.script_pubkey.hex() == "a914c2c9c510e9d7f92fd6131e94803a8d34a8ef675e87"
    assert sh_wsh.redeem_script == wsh.script_pubkey
    with pytest.raises(DescriptorError, match="21 keys in multisig; at most 20"):
        parse(f"wsh(multi(1,{','.join([*keys_20, PK_A34B])}))")


@pytest.mark.parametrize(("keys", "script"), BIP67)
def test_bip67_sortedmulti(keys: list[str], script: str) -> None:
    out = parse(f"wsh(sortedmulti(2,{','.join(keys)}))").derive(0)
    assert out.witness_script is not None
    assert out.witness_script.hex() == script
    assert out.script_pubkey.hex() == p2wsh_hex(script)


@pytest.mark.parametrize(
    ("text", "reason"),
    [  # BIP-383 invalid descriptors and legacy forms Coldstation refuses
        (f"sh(multi(16,{','.join(KEYS_16)}))", "legacy sh\\(multi\\(\\)\\) is not supported"),
        (f"multi(1,{PK_A34B})", "bare multi\\(\\) is not supported"),
        (f"sortedmulti(1,{PK_A34B})", "bare sortedmulti\\(\\) is not supported"),
        (f"wsh(multi(3,{PK_A34B},{PK_0260}))", "larger than 2 keys"),
    ],
)
def test_bip383_invalid(text: str, reason: str) -> None:
    with pytest.raises(DescriptorError, match=reason):
        parse(text)


# -- BIP-174 ------------------------------------------------------------------------------


def test_bip174_updater_witness_script_and_origins() -> None:
    k2 = "03089dc10c7ac6db54f91329af617333db388cead0c231f723379d1b99030b02dc"
    k3 = "023add904f3d6dcf59ddb906b0dee23529b7ffb9ed50e5e86151926860221f0e73"
    inner = f"multi(2,[d90c6a4f/0'/0'/2']{k2},[d90c6a4f/0'/0'/3']{k3})"
    wsh = parse(f"wsh({inner})").derive(0)
    assert wsh.witness_script is not None
    assert wsh.witness_script.hex() == (
        "522103089dc10c7ac6db54f91329af617333db388cead0c231f723379d1b99030b02dc21023add904f3d6dcf"
        "59ddb906b0dee23529b7ffb9ed50e5e86151926860221f0e7352ae"
    )
    redeem = "00208c2353173743b595dfb4a07b72ba8e42e3797da74e87fe7d9d7497e3b2028903"
    assert wsh.script_pubkey.hex() == redeem
    sh_wsh = parse(f"sh(wsh({inner}))").derive(0)
    assert sh_wsh.redeem_script is not None and sh_wsh.redeem_script.hex() == redeem
    # the previous output this PSBT input spends
    assert sh_wsh.script_pubkey.hex() == "a914b7f5faf40e3d40a5a459b1db3535f2b72fa921e887"
    origins = {pk.hex(): origin.to_psbt_bytes().hex() for pk, origin in sh_wsh.keys}
    assert origins == {
        k2: "d90c6a4f000000800000008002000080",
        k3: "d90c6a4f000000800000008003000080",
    }


# -- BIP-389 multipath --------------------------------------------------------------------


def test_bip389_wpkh_multipath() -> None:
    text = f"wpkh([ffffffff/13h]{XPUB_69H7}/<1;3>/2/*)"
    desc = parse(text)
    assert str(desc) == add_checksum(text)
    assert desc.branch_count == 2
    assert [d.body() for d in desc.expand_multipath()] == [
        f"wpkh([ffffffff/13h]{XPUB_69H7}/1/2/*)",
        f"wpkh([ffffffff/13h]{XPUB_69H7}/3/2/*)",
    ]
    # the first branch is BIP-382's wpkh([ffffffff/13']xpub.../1/2/*) vector
    assert desc.derive(1).script_pubkey.hex() == "0014af0bd98abc2f2cae66e36896a39ffe2d32984fb7"
    change = desc.derive(1, change=True)
    assert change.keys[0][1] == KeyOrigin(b"\xff" * 4, [13 + H, 3, 2, 1])


def test_bip389_multi_multipath() -> None:
    text = f"wsh(multi(2,{XPUB_6ERA}/<1;2>/*,{XPUB_68NZ}/<3;4>/0/*))"
    desc = parse(text)
    assert str(desc) == add_checksum(text)
    assert [d.body() for d in desc.expand_multipath()] == [
        f"wsh(multi(2,{XPUB_6ERA}/1/*,{XPUB_68NZ}/3/0/*))",
        f"wsh(multi(2,{XPUB_6ERA}/2/*,{XPUB_68NZ}/4/0/*))",
    ]
    for branch, single in enumerate(desc.expand_multipath()):
        assert desc.derive(7, change=bool(branch)) == single.derive(7)


def test_bip389_multipath_mixed_with_plain_keys() -> None:
    # BIP-383's sortedmulti vector is the receive branch of this descriptor.
    desc = parse(f"wsh(sortedmulti(2,{XPUB_6ERA}/*,{XPUB_68NZ}/0/<0;1>/*))")
    out = desc.derive(0)
    assert out.witness_script is not None
    assert out.witness_script.hex() == (
        "5221025d5fc65ebb8d44a5274b53bac21ff8307fec2334a32df05553459f8b1f7fe1b62102fbd47cc8034098"
        "f0e6a94c6aeee8528abf0a2153a5d8e46d325b7284c046784652ae"
    )


@pytest.mark.parametrize(
    ("text", "reason"),
    [  # BIP-389 invalid descriptors (pkh/tr/sh(multi) cases moved into wpkh()/wsh())
        (f"wpkh({XPUB_661_FW31}/<0;1>/<2;3>)", "only one multipath"),
        (f"wpkh([deadbeef/<0;1>]{XPUB_661_FW31}/0)", "not allowed in a key origin"),
        (
            f"wsh(multi(2,{XPUB_6ERA}/<1;2;3>/0/*,{XPUB_68NZ}/0/*,{XPUB_661_GDZQ}/0/0/<3;4>/*))",
            "different lengths",
        ),
        (f"wpkh({XPUB_661_FW31}/<>/*)", "needs at least two indexes"),
        (f"wpkh({XPUB_661_FW31}/0>/*)", "must look like <a;b>"),
        (f"wpkh({XPUB_661_FW31}/<0/*)", "must look like <a;b>"),
        (f"wpkh({XPUB_661_FW31}/<0;>/*)", "empty multipath index"),
        (f"wpkh({XPUB_661_FW31}/<0;0>/*)", "repeats an index"),
        (f"wpkh({XPUB_661_FW31}/<0h;1h>/*)", "hardened multipath index"),
    ],
)
def test_bip389_invalid(text: str, reason: str) -> None:
    with pytest.raises(DescriptorError, match=reason):
        parse(text)


# -- BIP-84 / BIP-49 wallets --------------------------------------------------------------


def test_bip84_wallet_addresses() -> None:
    zpub = (
        "zpub6rFR7y4Q2AijBEqTUquhVz398htDFrtymD9xYYfG1m4wAcvPhXNfE3EfH1r1ADqtfSdVCToUG868RvUUkg"
        "DKf31mGDtKsAYz2oz2AGutZYs"
    )
    xpub = slip132_to_standard(zpub, Network.MAINNET.xpub_version)
    desc = parse(f"wpkh([73c5da0a/84h/0h/0h]{xpub}/<0;1>/*)")
    assert desc.address(0, Network.MAINNET) == "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu"
    assert desc.address(1, Network.MAINNET) == "bc1qnjg0jd8228aq7egyzacy8cys3knf9xvrerkf9g"
    assert desc.address(0, Network.MAINNET, change=True) == (
        "bc1q8c6fshw2dlwun7ekn9qwf37cu2rn755upcp6el"
    )
    pubkey, origin = desc.derive(0).keys[0]
    assert pubkey.hex() == "0330d54fd0dd420a6e5f8d3624f5f3482cae350f79d5f0753bf5beef9c2d91af3c"
    assert str(origin) == "73c5da0a/84'/0'/0'/0/0"
    with pytest.raises(DescriptorError, match=r"keys are for mainnet.*requested for testnet"):
        desc.address(0, Network.TESTNET)


def test_bip49_testnet_sh_wpkh() -> None:
    upub = (
        "upub5EFU65HtV5TeiSHmZZm7FUffBGy8UKeqp7vw43jYbvZPpoVsgU93oac7Wk3u6moKegAEWtGNF8DehrnHtv"
        "21XXEMYRUocHqguyjknFHYfgY"
    )
    tpub = slip132_to_standard(upub, Network.TESTNET.xpub_version)
    desc = parse(f"sh(wpkh({tpub}/0/*))")
    out = desc.derive(0)
    assert out.redeem_script is not None
    assert out.redeem_script.hex() == "001438971f73930f6c141d977ac4fd4a727c854935b3"
    assert out.address(Network.TESTNET) == "2Mww8dCYPUpKHofjgcXcBCEGmniw9CoaiD2"
    assert desc.address(0, Network.SIGNET) == "2Mww8dCYPUpKHofjgcXcBCEGmniw9CoaiD2"
    assert desc.network is Network.TESTNET


# -- Coldstation's own refusals -----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (f"wsh(multi(2,{PK_A34B},{PK_0260},{PK_A34B}))", "duplicate key"),
        (f"wsh(sortedmulti(1,{XPUB_6ERA}/0/*,[deadbeef/1]{XPUB_6ERA}/0/*))", "duplicate key"),
        (f"wpkh({PK_A34B})x", "unexpected text after"),
        (f"wpkh({PK_A34B}))", "unexpected text after"),
        (f"wpkh({PK_A34B}", "missing '\\)'"),
        (f"foo({PK_A34B})", "unknown descriptor function 'foo'"),
        (f"WPKH({PK_A34B})", "unknown descriptor function 'WPKH'"),
        (f"pkh({PK_A34B})", "pkh\\(\\) is not supported"),
        (f"tr({PK_A34B})", "tr\\(\\) is not supported"),
        (PK_A34B, "must start with a function"),
        (f"wpkh({XPUB_6ERA}/0/*/1)", "wildcard '\\*' must be the last"),
        (f"wpkh({PK_A34B}/0)", "only allowed after an xpub"),
        (f"wsh(multi(1,{XPUB_6ERA}/0/*,{TPUB_CORE}/0/*))", "mixes mainnet"),
        (f"wsh(multi(1,{PK_A34B}))x", "unexpected text after"),
        ("wsh(multi(1))", "needs a threshold and at least one key"),
    ],
)
def test_coldstation_refusals(text: str, reason: str) -> None:
    with pytest.raises(DescriptorError, match=reason):
        parse(text)


def test_change_needs_multipath() -> None:
    desc = parse(f"wpkh({XPUB_6ERA}/0/*)")
    with pytest.raises(DescriptorError, match="no change branch"):
        desc.derive(0, change=True)
    with pytest.raises(DescriptorError, match="out of range"):
        desc.derive(HARDENED)


def test_derived_duplicate_keys_are_refused() -> None:
    # the second key is the first one's /0 child given directly: same pubkeys once derived
    child = ExtendedKey.parse(XPUB_6ERA).derive_child(0)
    desc = parse(f"wsh(multi(2,{XPUB_6ERA}/0/*,{child}/*))")
    with pytest.raises(DescriptorError, match="duplicate public keys"):
        desc.derive(3)


def test_round_trip_and_equality() -> None:
    texts = [
        f"wsh(sortedmulti(2,[d90c6a4f/48h/1h/0h/2h]{TPUB_CORE}/<0;1>/*,{PK_A34B}))",
        f"sh(wsh(multi(1,[deadbeef/0'/1']{XPUB_6ERA}/5/*,{XPUB_68NZ})))",
        f"sh(wpkh([ffffffff/13']{XPUB_69H7}/1/2/*))",
    ]
    for text in texts:
        desc = parse(text)
        assert str(desc) == add_checksum(text)
        assert parse_descriptor(str(desc)) == desc
        assert hash(parse_descriptor(str(desc))) == hash(desc)
    same = parse(f"wpkh([ffffffff/13']{XPUB_69H7}/1/2/*)")
    assert same == parse(f"wpkh([ffffffff/13h]{XPUB_69H7}/1/2/*)")


def test_a_thousand_addresses_are_fast() -> None:
    desc = parse(f"wsh(sortedmulti(2,{XPUB_6ERA}/<0;1>/*,{XPUB_68NZ}/<0;1>/*))")
    start = time.perf_counter()
    scripts = {desc.derive(i).script_pubkey for i in range(1000)}
    elapsed = time.perf_counter() - start
    assert len(scripts) == 1000
    assert elapsed < 2.0, f"1,000 2-of-2 derivations took {elapsed:.2f}s"
