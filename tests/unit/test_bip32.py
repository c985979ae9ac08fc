"""BIP-32 tests: all five BIP-32 test vectors, plus BIP-84/BIP-49 account keys and the
BIP-174 key derivations and BIP32_DERIVATION encodings.

Sources: bip-0032.mediawiki (vectors 1-5, verbatim), bip-0084.mediawiki and
bip-0049.mediawiki (abandon...about seed), bip-0174.mediawiki (Updater section).
"""

from __future__ import annotations

import hashlib
import itertools
import time

import pytest

from shared.bitcoin.address import Network, b58check_decode, private_key_to_wif
from shared.bitcoin.bip32 import (
    HARDENED,
    BIP32Error,
    ExtendedKey,
    KeyOrigin,
    derive_child,
    derive_path,
    fingerprint,
    format_path,
    from_seed,
    parse_path,
)

H = HARDENED

VECTORS = [
    (  # test vector 1
        "000102030405060708090a0b0c0d0e0f",
        [
            (
                "m",
                "xpub661MyMwAqRbcFtXgS5sYJABqqG9YLmC4Q1Rdap9gSE8NqtwybGhePY2gZ29ESFjqJoCu1Rupje8YtGqsefD265TMg7usUDFdp6W1EGMcet8",
                "xprv9s21ZrQH143K3QTDL4LXw2F7HEK3wJUD2nW2nRk4stbPy6cq3jPPqjiChkVvvNKmPGJxWUtg6LnF5kejMRNNU3TGtRBeJgk33yuGBxrMPHi",
            ),
            (
                "m/0h",
                "xpub68Gmy5EdvgibQVfPdqkBBCHxA5htiqg55crXYuXoQRKfDBFA1WEjWgP6LHhwBZeNK1VTsfTFUHCdrfp1bgwQ9xv5ski8PX9rL2dZXvgGDnw",
                "xprv9uHRZZhk6KAJC1avXpDAp4MDc3sQKNxDiPvvkX8Br5ngLNv1TxvUxt4cV1rGL5hj6KCesnDYUhd7oWgT11eZG7XnxHrnYeSvkzY7d2bhkJ7",
            ),
            (
                "m/0h/1",
                "xpub6ASuArnXKPbfEwhqN6e3mwBcDTgzisQN1wXN9BJcM47sSikHjJf3UFHKkNAWbWMiGj7Wf5uMash7SyYq527Hqck2AxYysAA7xmALppuCkwQ",
                "xprv9wTYmMFdV23N2TdNG573QoEsfRrWKQgWeibmLntzniatZvR9BmLnvSxqu53Kw1UmYPxLgboyZQaXwTCg8MSY3H2EU4pWcQDnRnrVA1xe8fs",
            ),
            (
                "m/0h/1/2h",
                "xpub6D4BDPcP2GT577Vvch3R8wDkScZWzQzMMUm3PWbmWvVJrZwQY4VUNgqFJPMM3No2dFDFGTsxxpG5uJh7n7epu4trkrX7x7DogT5Uv6fcLW5",
                "xprv9z4pot5VBttmtdRTWfWQmoH1taj2axGVzFqSb8C9xaxKymcFzXBDptWmT7FwuEzG3ryjH4ktypQSAewRiNMjANTtpgP4mLTj34bhnZX7UiM",
            ),
            (
                "m/0h/1/2h/2",
                "xpub6FHa3pjLCk84BayeJxFW2SP4XRrFd1JYnxeLeU8EqN3vDfZmbqBqaGJAyiLjTAwm6ZLRQUMv1ZACTj37sR62cfN7fe5JnJ7dh8zL4fiyLHV",
                "xprvA2JDeKCSNNZky6uBCviVfJSKyQ1mDYahRjijr5idH2WwLsEd4Hsb2Tyh8RfQMuPh7f7RtyzTtdrbdqqsunu5Mm3wDvUAKRHSC34sJ7in334",
            ),
            (
                "m/0h/1/2h/2/1000000000",
                "xpub6H1LXWLaKsWFhvm6RVpEL9P4KfRZSW7abD2ttkWP3SSQvnyA8FSVqNTEcYFgJS2UaFcxupHiYkro49S8yGasTvXEYBVPamhGW6cFJodrTHy",
                "xprvA41z7zogVVwxVSgdKUHDy1SKmdb533PjDz7J6N6mV6uS3ze1ai8FHa8kmHScGpWmj4WggLyQjgPie1rFSruoUihUZREPSL39UNdE3BBDu76",
            ),
        ],
    ),
    (  # test vector 2
        "fffcf9f6f3f0edeae7e4e1dedbd8d5d2cfccc9c6c3c0bdbab7b4b1aeaba8a5a29f9c999693908d8a8784817e7b7875726f6c696663605d5a5754514e4b484542",
        [
            (
                "m",
                "xpub661MyMwAqRbcFW31YEwpkMuc5THy2PSt5bDMsktWQcFF8syAmRUapSCGu8ED9W6oDMSgv6Zz8idoc4a6mr8BDzTJY47LJhkJ8UB7WEGuduB",
                "xprv9s21ZrQH143K31xYSDQpPDxsXRTUcvj2iNHm5NUtrGiGG5e2DtALGdso3pGz6ssrdK4PFmM8NSpSBHNqPqm55Qn3LqFtT2emdEXVYsCzC2U",
            ),
            (
                "m/0",
                "xpub69H7F5d8KSRgmmdJg2KhpAK8SR3DjMwAdkxj3ZuxV27CprR9LgpeyGmXUbC6wb7ERfvrnKZjXoUmmDznezpbZb7ap6r1D3tgFxHmwMkQTPH",
                "xprv9vHkqa6EV4sPZHYqZznhT2NPtPCjKuDKGY38FBWLvgaDx45zo9WQRUT3dKYnjwih2yJD9mkrocEZXo1ex8G81dwSM1fwqWpWkeS3v86pgKt",
            ),
            (
                "m/0/2147483647h",
                "xpub6ASAVgeehLbnwdqV6UKMHVzgqAG8Gr6riv3Fxxpj8ksbH9ebxaEyBLZ85ySDhKiLDBrQSARLq1uNRts8RuJiHjaDMBU4Zn9h8LZNnBC5y4a",
                "xprv9wSp6B7kry3Vj9m1zSnLvN3xH8RdsPP1Mh7fAaR7aRLcQMKTR2vidYEeEg2mUCTAwCd6vnxVrcjfy2kRgVsFawNzmjuHc2YmYRmagcEPdU9",
            ),
            (
                "m/0/2147483647h/1",
                "xpub6DF8uhdarytz3FWdA8TvFSvvAh8dP3283MY7p2V4SeE2wyWmG5mg5EwVvmdMVCQcoNJxGoWaU9DCWh89LojfZ537wTfunKau47EL2dhHKon",
                "xprv9zFnWC6h2cLgpmSA46vutJzBcfJ8yaJGg8cX1e5StJh45BBciYTRXSd25UEPVuesF9yog62tGAQtHjXajPPdbRCHuWS6T8XA2ECKADdw4Ef",
            ),
            (
                "m/0/2147483647h/1/2147483646h",
                "xpub6ERApfZwUNrhLCkDtcHTcxd75RbzS1ed54G1LkBUHQVHQKqhMkhgbmJbZRkrgZw4koxb5JaHWkY4ALHY2grBGRjaDMzQLcgJvLJuZZvRcEL",
                "xprvA1RpRA33e1JQ7ifknakTFpgNXPmW2YvmhqLQYMmrj4xJXXWYpDPS3xz7iAxn8L39njGVyuoseXzU6rcxFLJ8HFsTjSyQbLYnMpCqE2VbFWc",
            ),
            (
                "m/0/2147483647h/1/2147483646h/2",
                "xpub6FnCn6nSzZAw5Tw7cgR9bi15UV96gLZhjDstkXXxvCLsUXBGXPdSnLFbdpq8p9HmGsApME5hQTZ3emM2rnY5agb9rXpVGyy3bdW6EEgAtqt",
                "xprvA2nrNbFZABcdryreWet9Ea4LvTJcGsqrMzxHx98MMrotbir7yrKCEXw7nadnHM8Dq38EGfSh6dqA9QWTyefMLEcBYJUuekgW4BYPJcr9E7j",
            ),
        ],
    ),
    (  # test vector 3
        "4b381541583be4423346c643850da4b320e46a87ae3d2a4e6da11eba819cd4acba45d239319ac14f863b8d5ab5a0d0c64d2e8a1e7d1457df2e5a3c51c73235be",
        [
            (
                "m",
                "xpub661MyMwAqRbcEZVB4dScxMAdx6d4nFc9nvyvH3v4gJL378CSRZiYmhRoP7mBy6gSPSCYk6SzXPTf3ND1cZAceL7SfJ1Z3GC8vBgp2epUt13",
                "xprv9s21ZrQH143K25QhxbucbDDuQ4naNntJRi4KUfWT7xo4EKsHt2QJDu7KXp1A3u7Bi1j8ph3EGsZ9Xvz9dGuVrtHHs7pXeTzjuxBrCmmhgC6",
            ),
            (
                "m/0h",
                "xpub68NZiKmJWnxxS6aaHmn81bvJeTESw724CRDs6HbuccFQN9Ku14VQrADWgqbhhTHBaohPX4CjNLf9fq9MYo6oDaPPLPxSb7gwQN3ih19Zm4Y",
                "xprv9uPDJpEQgRQfDcW7BkF7eTya6RPxXeJCqCJGHuCJ4GiRVLzkTXBAJMu2qaMWPrS7AANYqdq6vcBcBUdJCVVFceUvJFjaPdGZ2y9WACViL4L",
            ),
        ],
    ),
    (  # test vector 4
        "3ddd5602285899a946114506157c7997e5444528f3003f6134712147db19b678",
        [
            (
                "m",
                "xpub661MyMwAqRbcGczjuMoRm6dXaLDEhW1u34gKenbeYqAix21mdUKJyuyu5F1rzYGVxyL6tmgBUAEPrEz92mBXjByMRiJdba9wpnN37RLLAXa",
                "xprv9s21ZrQH143K48vGoLGRPxgo2JNkJ3J3fqkirQC2zVdk5Dgd5w14S7fRDyHH4dWNHUgkvsvNDCkvAwcSHNAQwhwgNMgZhLtQC63zxwhQmRv",
            ),
            (
                "m/0h",
                "xpub69AUMk3qDBi3uW1sXgjCmVjJ2G6WQoYSnNHyzkmdCHEhSZ4tBok37xfFEqHd2AddP56Tqp4o56AePAgCjYdvpW2PU2jbUPFKsav5ut6Ch1m",
                "xprv9vB7xEWwNp9kh1wQRfCCQMnZUEG21LpbR9NPCNN1dwhiZkjjeGRnaALmPXCX7SgjFTiCTT6bXes17boXtjq3xLpcDjzEuGLQBM5ohqkao9G",
            ),
            (
                "m/0h/1h",
                "xpub6BJA1jSqiukeaesWfxe6sNK9CCGaujFFSJLomWHprUL9DePQ4JDkM5d88n49sMGJxrhpjazuXYWdMf17C9T5XnxkopaeS7jGk1GyyVziaMt",
                "xprv9xJocDuwtYCMNAo3Zw76WENQeAS6WGXQ55RCy7tDJ8oALr4FWkuVoHJeHVAcAqiZLE7Je3vZJHxspZdFHfnBEjHqU5hG1Jaj32dVoS6XLT1",
            ),
        ],
    ),
]

INVALID_KEYS = [
    (
        "xpub661MyMwAqRbcEYS8w7XLSVeEsBXy79zSzH1J8vCdxAZningWLdN3zgtU6LBpB85b3D2yc8sfvZU521AAwdZafEz7mnzBBsz4wKY5fTtTQBm",
        "pubkey version / prvkey mismatch",
    ),
    (
        "xprv9s21ZrQH143K24Mfq5zL5MhWK9hUhhGbd45hLXo2Pq2oqzMMo63oStZzFGTQQD3dC4H2D5GBj7vWvSQaaBv5cxi9gafk7NF3pnBju6dwKvH",
        "prvkey version / pubkey mismatch",
    ),
    (
        "xpub661MyMwAqRbcEYS8w7XLSVeEsBXy79zSzH1J8vCdxAZningWLdN3zgtU6Txnt3siSujt9RCVYsx4qHZGc62TG4McvMGcAUjeuwZdduYEvFn",
        "invalid pubkey prefix 04",
    ),
    (
        "xprv9s21ZrQH143K24Mfq5zL5MhWK9hUhhGbd45hLXo2Pq2oqzMMo63oStZzFGpWnsj83BHtEy5Zt8CcDr1UiRXuWCmTQLxEK9vbz5gPstX92JQ",
        "invalid prvkey prefix 04",
    ),
    (
        "xpub661MyMwAqRbcEYS8w7XLSVeEsBXy79zSzH1J8vCdxAZningWLdN3zgtU6N8ZMMXctdiCjxTNq964yKkwrkBJJwpzZS4HS2fxvyYUA4q2Xe4",
        "invalid pubkey prefix 01",
    ),
    (
        "xprv9s21ZrQH143K24Mfq5zL5MhWK9hUhhGbd45hLXo2Pq2oqzMMo63oStZzFAzHGBP2UuGCqWLTAPLcMtD9y5gkZ6Eq3Rjuahrv17fEQ3Qen6J",
        "invalid prvkey prefix 01",
    ),
    (
        "xprv9s2SPatNQ9Vc6GTbVMFPFo7jsaZySyzk7L8n2uqKXJen3KUmvQNTuLh3fhZMBoG3G4ZW1N2kZuHEPY53qmbZzCHshoQnNf4GvELZfqTUrcv",
        "zero depth with non-zero parent fingerprint",
    ),
    (
        "xpub661no6RGEX3uJkY4bNnPcw4URcQTrSibUZ4NqJEw5eBkv7ovTwgiT91XX27VbEXGENhYRCf7hyEbWrR3FewATdCEebj6znwMfQkhRYHRLpJ",
        "zero depth with non-zero parent fingerprint",
    ),
    (
        "xprv9s21ZrQH4r4TsiLvyLXqM9P7k1K3EYhA1kkD6xuquB5i39AU8KF42acDyL3qsDbU9NmZn6MsGSUYZEsuoePmjzsB3eFKSUEh3Gu1N3cqVUN",
        "zero depth with non-zero index",
    ),
    (
        "xpub661MyMwAuDcm6CRQ5N4qiHKrJ39Xe1R1NyfouMKTTWcguwVcfrZJaNvhpebzGerh7gucBvzEQWRugZDuDXjNDRmXzSZe4c7mnTK97pTvGS8",
        "zero depth with non-zero index",
    ),
    (
        "DMwo58pR1QLEFihHiXPVykYB6fJmsTeHvyTp7hRThAtCX8CvYzgPcn8XnmdfHGMQzT7ayAmfo4z3gY5KfbrZWZ6St24UVf2Qgo6oujFktLHdHY4",
        "unknown extended key version",
    ),
    (
        "DMwo58pR1QLEFihHiXPVykYB6fJmsTeHvyTp7hRThAtCX8CvYzgPcn8XnmdfHPmHJiEDXkTiJTVV9rHEBUem2mwVbbNfvT2MTcAqj3nesx8uBf9",
        "unknown extended key version",
    ),
    (
        "xprv9s21ZrQH143K24Mfq5zL5MhWK9hUhhGbd45hLXo2Pq2oqzMMo63oStZzF93Y5wvzdUayhgkkFoicQZcP3y52uPPxFnfoLZB21Teqt1VvEHx",
        "private key 0 not in 1..n-1",
    ),
    (
        "xprv9s21ZrQH143K24Mfq5zL5MhWK9hUhhGbd45hLXo2Pq2oqzMMo63oStZzFAzHGBP2UuGCqWLTAPLcMtD5SDKr24z3aiUvKr9bJpdrcLg1y3G",
        "private key n not in 1..n-1",
    ),
    (
        "xpub661MyMwAqRbcEYS8w7XLSVeEsBXy79zSzH1J8vCdxAZningWLdN3zgtU6Q5JXayek4PRsn35jii4veMimro1xefsM58PgBMrvdYre8QyULY",
        "invalid pubkey 020000000000000000000000000000000000000000000000000000000000000007",
    ),
    (
        "xprv9s21ZrQH143K3QTDL4LXw2F7HEK3wJUD2nW2nRk4stbPy6cq3jPPqjiChkVvvNKmPGJxWUtg6LnF5kejMRNNU3TGtRBeJgk33yuGBxrMPHL",
        "invalid checksum",
    ),
]

#: What each vector-5 key must be refused for (a pattern of our message for the BIP's reason).
INVALID_REASONS = {
    "pubkey version / prvkey mismatch": "pubkey version / prvkey mismatch",
    "prvkey version / pubkey mismatch": "prvkey version / pubkey mismatch",
    "invalid pubkey prefix 04": "invalid pubkey prefix 04",
    "invalid prvkey prefix 04": "invalid prvkey prefix 04",
    "invalid pubkey prefix 01": "invalid pubkey prefix 01",
    "invalid prvkey prefix 01": "invalid prvkey prefix 01",
    "zero depth with non-zero parent fingerprint": "zero depth with non-zero parent fingerprint",
    "zero depth with non-zero index": "zero depth with non-zero index",
    "unknown extended key version": "unknown extended key version",
    "private key 0 not in 1..n-1": r"private key not in 1\.\.n-1",
    "private key n not in 1..n-1": r"private key not in 1\.\.n-1",
    "invalid pubkey 020000000000000000000000000000000000000000000000000000000000000007": (
        "invalid pubkey 020000000000000000000000000000000000000000000000000000000000000007"
    ),
    "invalid checksum": "bad base58 checksum",
}

CHAINS = [(seed, *chain) for seed, chains in VECTORS for chain in chains]

ABANDON = " ".join(["abandon"] * 11 + ["about"])
#: BIP-174 Updater: master key d90c6a4f and the pubkeys it lists with their paths.
BIP174_TPRV = (
    "tprv8ZgxMBicQKsPd9TeAdPADNnSyH9SSUUbTVeFszDE23Ki6TBB5nCefAdHkK8Fm3qMQR6sHwA56zqRmKmxnHk37Jk"
    "iFzvncDqoKmPWubu7hDF"
)
BIP174_KEYS = [
    ("029583bf39ae0a609747ad199addd634fa6108559d6c5cd39b4c2183f1ab96e07f", "m/0'/0'/0'"),
    ("02dab61ff49a14db6a7d02b0cd1fbb78fc4b18312b5b4e54dae4dba2fbfef536d7", "m/0'/0'/1'"),
    ("03089dc10c7ac6db54f91329af617333db388cead0c231f723379d1b99030b02dc", "m/0'/0'/2'"),
    ("023add904f3d6dcf59ddb906b0dee23529b7ffb9ed50e5e86151926860221f0e73", "m/0'/0'/3'"),
    ("03a9a4c37f5996d3aa25dbac6b570af0650394492942460b354753ed9eeca58771", "m/0'/0'/4'"),
    ("027f6399757d2eff55a136ad02c684b1838b6556e5f1b6b34282a94b6b50051096", "m/0'/0'/5'"),
]


def _bip39_seed(mnemonic: str) -> bytes:
    """BIP-39 seed with an empty passphrase (independent of the code under test)."""
    return hashlib.pbkdf2_hmac("sha512", mnemonic.encode(), b"mnemonic", 2048)


# -- vectors 1-4 --------------------------------------------------------------------------


@pytest.mark.parametrize(("seed", "path", "xpub", "xprv"), CHAINS)
def test_bip32_vectors_private_derivation(seed: str, path: str, xpub: str, xprv: str) -> None:
    key = derive_path(from_seed(bytes.fromhex(seed)), path)
    assert key.to_base58() == xprv
    assert key.neuter().to_base58() == xpub


@pytest.mark.parametrize(("seed", "path", "xpub", "xprv"), CHAINS)
def test_bip32_vectors_parse_round_trip(seed: str, path: str, xpub: str, xprv: str) -> None:
    public, private = ExtendedKey.parse(xpub), ExtendedKey.parse(xprv)
    assert str(public) == public.to_base58() == xpub
    assert private.to_base58() == xprv
    assert private.neuter() == public
    assert public.depth == private.depth == len(parse_path(path))
    assert not public.is_private and private.is_private
    assert public.network is Network.MAINNET


def _public_steps() -> list[tuple[str, str, int]]:
    """Consecutive vector chains whose last step is unhardened: CKDpub must match."""
    steps = []
    for _seed, chains in VECTORS:
        for (_, parent, _), (path, child, _) in itertools.pairwise(chains):
            index = parse_path(path)[-1]
            if index < H:
                steps.append((parent, child, index))
    return steps


@pytest.mark.parametrize(("parent", "child", "index"), _public_steps())
def test_bip32_vectors_public_derivation(parent: str, child: str, index: int) -> None:
    derived = derive_child(ExtendedKey.parse(parent), index)
    assert derived.to_base58() == child


@pytest.mark.parametrize(("seed", "path", "xpub", "xprv"), CHAINS)
def test_parent_fingerprint_links_the_chain(seed: str, path: str, xpub: str, xprv: str) -> None:
    steps = parse_path(path)
    if not steps:
        return
    parent = derive_path(from_seed(bytes.fromhex(seed)), steps[:-1])
    child = ExtendedKey.parse(xpub)
    assert child.parent_fingerprint == parent.fingerprint == fingerprint(parent.public_key)
    assert child.child_number == steps[-1]


def test_master_fingerprint_of_vector_1() -> None:
    # m/0h of vector 1 records the master's fingerprint in its serialization.
    child = ExtendedKey.parse(VECTORS[0][1][1][1])
    assert child.parent_fingerprint.hex() == "3442193e"


# -- vector 5 -----------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "reason"), INVALID_KEYS)
def test_bip32_vector_5_invalid_keys(text: str, reason: str) -> None:
    with pytest.raises(BIP32Error, match=INVALID_REASONS[reason]):
        ExtendedKey.parse(text)


# -- BIP-84 / BIP-49 / BIP-174 ------------------------------------------------------------


def test_bip84_account_and_addresses_keys() -> None:
    master = from_seed(_bip39_seed(ABANDON))
    rootpub = "zpub6jftahH18ngZxLmXaKw3GSZzZsszmt9WqedkyZdezFtWRFBZqsQH5hyUmb4pCEeZGmVfQuP5bedXTB8is6fTv19U1GQRyQUKQGUTzyHACMF"  # noqa: E501
    account_zpub = "zpub6rFR7y4Q2AijBEqTUquhVz398htDFrtymD9xYYfG1m4wAcvPhXNfE3EfH1r1ADqtfSdVCToUG868RvUUkgDKf31mGDtKsAYz2oz2AGutZYs"  # noqa: E501
    # SLIP-132 only changes the 4 version bytes: the rest must be ours byte for byte.
    assert master.neuter().serialize()[4:] == b58check_decode(rootpub)[4:]
    account = derive_path(master, "m/84'/0'/0'")
    assert account.neuter().serialize()[4:] == b58check_decode(account_zpub)[4:]
    expected = {
        (0, 0): "0330d54fd0dd420a6e5f8d3624f5f3482cae350f79d5f0753bf5beef9c2d91af3c",
        (0, 1): "03e775fd51f0dfb8cd865d9ff1cca2a158cf651fe997fdc9fee9c1d3b5e995ea77",
        (1, 0): "03025324888e429ab8e3dbaf1f7802648b9cd01e9b418485c5fa4c1b9b5700e1a6",
    }
    for (change, index), pubkey in expected.items():
        assert derive_path(account.neuter(), [change, index]).public_key.hex() == pubkey
    secret = derive_path(account, [0, 0]).key
    wif = private_key_to_wif(secret, Network.MAINNET)
    assert wif == "KyZpNDKnfs94vbrwhJneDi77V6jF64PWPF8x5cdJb8ifgg2DUc9d"


def test_bip49_testnet_account() -> None:
    master = from_seed(_bip39_seed(ABANDON), Network.TESTNET)
    upub = "upub5EFU65HtV5TeiSHmZZm7FUffBGy8UKeqp7vw43jYbvZPpoVsgU93oac7Wk3u6moKegAEWtGNF8DehrnHtv21XXEMYRUocHqguyjknFHYfgY"  # noqa: E501
    account = derive_path(master, "m/49'/1'/0'")
    assert account.neuter().to_base58().startswith("tpub")
    assert account.neuter().serialize()[4:] == b58check_decode(upub)[4:]
    key = derive_path(account, "0/0")
    assert key.key.hex() == "c9bdb49cfbaedca21c4b1f3a7803c34636b1d7dc55a717132443fc3f4c5867e8"
    assert key.public_key.hex() == (
        "03a1af804ac108a8a51782198c2d034b28bf90c8803f5a53f76276fa69a4eae77f"
    )
    wif = private_key_to_wif(key.key, Network.TESTNET)
    assert wif == "cULrpoZGXiuC19Uhvykx7NugygA3k86b3hmdCeyvHYQZSxojGyXJ"


@pytest.mark.parametrize(("pubkey", "path"), BIP174_KEYS)
def test_bip174_updater_keys(pubkey: str, path: str) -> None:
    master = ExtendedKey.parse(BIP174_TPRV)
    assert master.network is Network.TESTNET
    assert master.fingerprint.hex() == "d90c6a4f"
    assert derive_path(master, path).public_key.hex() == pubkey


@pytest.mark.parametrize(
    ("origin", "psbt_hex"),
    [  # BIP32_DERIVATION values as they appear in the BIP-174 Updater PSBT
        ("d90c6a4f/0'/0'/0'", "d90c6a4f000000800000008000000080"),
        ("d90c6a4f/0'/0'/1'", "d90c6a4f000000800000008001000080"),
        ("d90c6a4f/0'/0'/2'", "d90c6a4f000000800000008002000080"),
        ("d90c6a4f/0'/0'/3'", "d90c6a4f000000800000008003000080"),
        ("d90c6a4f/0'/0'/4'", "d90c6a4f000000800000008004000080"),
        ("d90c6a4f/0'/0'/5'", "d90c6a4f000000800000008005000080"),
    ],
)
def test_key_origin_psbt_encoding(origin: str, psbt_hex: str) -> None:
    parsed = KeyOrigin.parse(origin)
    assert str(parsed) == origin
    assert parsed.to_psbt_bytes().hex() == psbt_hex
    assert KeyOrigin.from_psbt_bytes(bytes.fromhex(psbt_hex)) == parsed


def test_key_origin_forms() -> None:
    origin = KeyOrigin.parse("[D90C6A4F/48h/1H/0'/2']")
    assert origin == KeyOrigin(bytes.fromhex("d90c6a4f"), [48 + H, 1 + H, H, 2 + H])
    assert str(origin) == "d90c6a4f/48'/1'/0'/2'"
    assert origin.format("h") == "d90c6a4f/48h/1h/0h/2h"
    assert str(KeyOrigin.parse("deadbeef")) == "deadbeef"
    assert KeyOrigin(b"\xde\xad\xbe\xef", (1, 2)) == KeyOrigin(b"\xde\xad\xbe\xef", [1, 2])
    assert len({origin, KeyOrigin.parse("d90c6a4f/48'/1'/0'/2'")}) == 1
    assert origin.extend([0, 5]).path[-2:] == [0, 5]
    for bad in ("deadbef/0", "deadbeefa/0", "gaaaaaaa/0", "deadbeef/0/", "deadbeef/0f"):
        with pytest.raises(ValueError, match=r"fingerprint|path element"):
            KeyOrigin.parse(bad)


@pytest.mark.parametrize("size", [0, 1, 3, 5, 6, 7, 9, 11])
def test_key_origin_psbt_bad_lengths(size: int) -> None:
    with pytest.raises(ValueError, match="not 4 \\+ 4k"):
        KeyOrigin.from_psbt_bytes(bytes(size))


# -- paths --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("m/48'/1'/0'/2'", [48 + H, 1 + H, H, 2 + H]),
        ("m/48h/1H/0'/2", [48 + H, 1 + H, H, 2]),
        ("0/5", [0, 5]),
        ("m", []),
        ("m/2147483647'", [0xFFFFFFFF]),
        ("m/2147483647", [0x7FFFFFFF]),
    ],
)
def test_parse_path(text: str, expected: list[int]) -> None:
    assert parse_path(text) == expected


@pytest.mark.parametrize("text", ["m/", "m/1/", "m/2147483648", "m/-1", "m/1x", "m/1''", "m//1"])
def test_parse_path_refusals(text: str) -> None:
    with pytest.raises(BIP32Error):
        parse_path(text)


def test_format_path() -> None:
    assert format_path([48 + H, 1 + H, H, 2 + H]) == "m/48'/1'/0'/2'"
    assert format_path([84 + H, 0], prefix="", hardened_marker="h") == "84h/0"
    assert format_path([]) == "m"


# -- refusals and hygiene -----------------------------------------------------------------


def test_hardened_child_of_public_key_is_refused() -> None:
    xpub = ExtendedKey.parse(VECTORS[0][1][0][1])
    with pytest.raises(BIP32Error, match="hardened"):
        derive_child(xpub, H)
    with pytest.raises(BIP32Error, match="out of range"):
        derive_child(xpub, 2**32)


def test_slip132_keys_are_refused_by_name() -> None:
    zpub = "zpub6rFR7y4Q2AijBEqTUquhVz398htDFrtymD9xYYfG1m4wAcvPhXNfE3EfH1r1ADqtfSdVCToUG868RvUUkgDKf31mGDtKsAYz2oz2AGutZYs"  # noqa: E501
    zprv = "zprvAWgYBBk7JR8Gjrh4UJQ2uJdG1r3WNRRfURiABBE3RvMXYSrRJL62XuezvGdPvG6GFBZduosCc1YP5wixPox7zhZLfiUm8aunE96BBa4Kei5"  # noqa: E501
    upub = "upub5EFU65HtV5TeiSHmZZm7FUffBGy8UKeqp7vw43jYbvZPpoVsgU93oac7Wk3u6moKegAEWtGNF8DehrnHtv21XXEMYRUocHqguyjknFHYfgY"  # noqa: E501
    for text, name in ((zpub, "zpub"), (zprv, "zprv"), (upub, "upub")):
        with pytest.raises(BIP32Error, match=f"SLIP-132 {name}"):
            ExtendedKey.parse(text)


def test_private_keys_do_not_print_themselves() -> None:
    xprv_text = VECTORS[0][1][0][2]
    xprv = ExtendedKey.parse(xprv_text)
    assert xprv_text not in str(xprv)
    assert xprv_text not in repr(xprv) and xprv.key.hex() not in repr(xprv)
    assert xprv.to_base58() == xprv_text


def test_seed_length_is_checked() -> None:
    for size in (15, 65):
        with pytest.raises(BIP32Error, match=r"seed must be 16\.\.64 bytes"):
            from_seed(bytes(size))


def test_neuter_of_public_key_is_itself() -> None:
    xpub = ExtendedKey.parse(VECTORS[1][1][0][1])
    assert xpub.neuter() is xpub
    assert xpub.derive_child(0) == derive_child(xpub, 0)
    assert xpub.derive_path("0/2") == derive_child(derive_child(xpub, 0), 2)


def test_thousand_public_children_are_fast() -> None:
    xpub = ExtendedKey.parse(VECTORS[0][1][1][1])
    start = time.perf_counter()
    children = [xpub.derive_child(i).public_key for i in range(1000)]
    elapsed = time.perf_counter() - start
    assert len(set(children)) == 1000
    assert elapsed < 1.0, f"1,000 CKDpub took {elapsed:.2f}s"
