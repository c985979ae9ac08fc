"""Address, bech32/bech32m, base58 and WIF tests against published vectors.

Sources: BIP-173 and BIP-350 test vectors; Bitcoin Core src/test/data/key_io_valid.json
and base58_encode_decode.json.
"""

from __future__ import annotations

import pytest

from shared.bitcoin.address import (
    AddressError,
    Bech32Encoding,
    Network,
    address_to_script,
    b58check_decode,
    b58check_encode,
    b58decode,
    b58encode,
    bech32_decode,
    network_by_name,
    private_key_to_wif,
    script_to_address,
    segwit_decode,
    wif_to_private_key,
)

CHAINS = {
    "main": Network.MAINNET,
    "testnet4": Network.TESTNET,
    "signet": Network.SIGNET,
    "regtest": Network.REGTEST,
}

# -- Bitcoin Core key_io_valid.json: (address, scriptPubKey hex, chain) --------------------
KEY_IO_ADDRESSES = [
    (
        "1FsSia9rv4NeEwvJ2GvXrX7LyxYspbN2mo",
        "76a914a31c06bd463e3923bc1aadbde48b16976c08071788ac",
        "main",
    ),
    (
        "36j4NfKv6Akva9amjWrLG6MuSQym1GuEmm",
        "a914373b819a068f32b7a6b38b6b38729647cfde01c287",
        "main",
    ),
    (
        "mzK2FFDEhxqHcmrJw1ysqFkVyhUULo45hZ",
        "76a914ce28b26c57472737f5c3561a1761185bd8589a4388ac",
        "testnet4",
    ),
    (
        "2NC2hEhe28ULKAJkW5MjZ3jtTMJdvXmByvK",
        "a914ce0bba75891ff9ec60148d4bd4a09ee2dc5c933187",
        "testnet4",
    ),
    (
        "mww4LvqtTMKvmeQvizPz2EQv26xTneWrbg",
        "76a914b4110ba93ac54afc14da3bdd19614774a2d55d2988ac",
        "signet",
    ),
    (
        "2N1r7aC69VHeE7yQJPDLi9T1PYq4wnwvjuT",
        "a9145e5a35ab44b3efaea5129ba22b88ba3e2976614587",
        "signet",
    ),
    (
        "n4fajahJrAuKbN7uNsKjLjQkz9Qn5ewJXQ",
        "76a914fdeca3b08e38af53d7c4c60e3ad208ce5066441088ac",
        "regtest",
    ),
    (
        "2MxFajLApXpYk4VodBSZSt7rw8y4ryABkfA",
        "a91436e9f191e0b75036a77f65e2eaa4752443233fbe87",
        "regtest",
    ),
    (
        "bc1qvyq0cc6rahyvsazfdje0twl7ez82ndmuac2lhv",
        "00146100fc6343edc8c874496cb2f5bbfec88ea9b77c",
        "main",
    ),
    (
        "bc1qyucykdlhp62tezs0hagqury402qwhk589q80tqs5myh3rxq34nwqhkdhv7",
        "002027304b37f70e94bc8a0fbf500e0c957a80ebda87280ef58214d92f119811acdc",
        "main",
    ),
    (
        "bc1p83n3au0rjylefxq2nc2xh2y4jzz4pm6zxj4mw5pagdjjr2a9f36s6jjnnu",
        "51203c671ef1e3913f94980a9e146ba895908550ef4234abb7503d436521aba54c75",
        "main",
    ),
    ("bc1z2rksukkjr8", "520250ed", "main"),
    (
        "tb1qcrh3yqn4nlleplcez2yndq2ry8h9ncg3qh7n54",
        "0014c0ef1202759fff90ff19128936814321ee59e111",
        "testnet4",
    ),
    (
        "tb1quyl9ujpgwr2chdzdnnalen48sup245vdfnh2jxhsuq3yx80rrwlq5hqfe4",
        "0020e13e5e482870d58bb44d9cfbfccea78702aad18d4ceea91af0e022431de31bbe",
        "testnet4",
    ),
    (
        "tb1p35n52jy6xkm4wd905tdy8qtagrn73kqdz73xe4zxpvq9t3fp50aqk3s6gz",
        "51208d2745489a35b75734afa2da43817d40e7e8d80d17a26cd4460b0055c521a3fa",
        "testnet4",
    ),
    ("tb1rgv5m6uvdk3kc7qsuz0c79v88ycr5w4wa", "53104329bd718db46d8f021c13f1e2b0e726", "testnet4"),
    (
        "tb1q3vya2h5435jkugq2few7dmktlrwq4ejmfaw7kr",
        "00148b09d55e958d256e200a4e5de6eecbf8dc0ae65b",
        "signet",
    ),
    (
        "tb1qxkhrl2s6ttrclckldruea0e8anhrehffl8xv7t0pdyrzm08v2hyqy408nf",
        "002035ae3faa1a5ac78fe2df68f99ebf27ecee3cdd29f9cccf2de169062dbcec55c8",
        "signet",
    ),
    (
        "tb1pae5um27ahn8n73pgexe3kcwlp8dhswpn684h2k2w6t9a7w3eq65qephd5y",
        "5120ee69cdabddbccf3f4428c9b31b61df09db783833d1eb75594ed2cbdf3a3906a8",
        "signet",
    ),
    (
        "tb1rx9n9g37az8mu236e5jpxdt0m67y4fuq8rhs0ss3djnm0kscfrwvq0ntlyg",
        "532031665447dd11f7c54759a48266adfbd78954f0071de0f8422d94f6fb43091b98",
        "signet",
    ),
    (
        "bcrt1qdavt4j2sd7dlhqsavtnfxvzppw6k7qy97tmnu9",
        "00146f58bac9506f9bfb821d62e69330410bb56f0085",
        "regtest",
    ),
    (
        "bcrt1qan8gntac7z7me2ejt4hpru42ad2f759fmy0m3ejvs98656znv7eqga4uhv",
        "0020ecce89afb8f0bdbcab325d6e11f2aaeb549f50a9d91fb8e64c814faa685367b2",
        "regtest",
    ),
    (
        "bcrt1pfwxjqvtt4tcxrtdluukfmy2dv7xd2qzdfy6kajv5nwn4yam3wxkq3553uh",
        "51204b8d20316baaf061adbfe72c9d914d678cd5004d49356ec9949ba752777171ac",
        "regtest",
    ),
    (
        "bcrt1sx6p8njlx7h9mc2agz4yg82dzne23050ncq72cneeecez2pst8mahn8xecsf8g6hzx94420",
        "6028368279cbe6f5cbbc2ba8154883a9a29e5517d1f3c03cac4f39ce3225060b3efb799cd9c412746ae2",
        "regtest",
    ),
    (
        "1FjL87pn8ky6Vbavd1ZHeChRXtoxwRGCRd",
        "76a914a19331b7b2627e663e25a7b001e4c0dcc5e21bc788ac",
        "main",
    ),
    (
        "3BZECeAH8gSKkjrTx8PwMrNQBLG18yHpvf",
        "a9146c382dcdf5b284760c8e3fead91f7422cd76aa8787",
        "main",
    ),
    (
        "n4YNbYuFdPwFrxSP8sjHFbAhUbLMUiY9jE",
        "76a914fc8f9851f3c1e4719cd0b8e4816dd4e88c72e52888ac",
        "testnet4",
    ),
    (
        "2NAeQVZayzVFAtgeC3iYJsjpjWDmsDph71A",
        "a914bedc797342c03fd7a346c4c7857ca03d467013b687",
        "testnet4",
    ),
    (
        "mnCBpkNMJEJLehgdEkzSo2eioniyJMxLpZ",
        "76a914493c455551e48a1423263b62b127b436106a685488ac",
        "signet",
    ),
    (
        "2N5sNHomeNJDZv67AcFx9ES7FBZY4jx9KDA",
        "a9148a776a0f34d56b63e7c595f2b205dbe1c393617a87",
        "signet",
    ),
    (
        "mfhE6jAUwjUDNZhaX1PAsDTKfneQF2Nshc",
        "76a91401f15a4cc063dae4f4d56b89bfbc8bcc9ae5387c88ac",
        "regtest",
    ),
    (
        "2MxNm1VHyVU4RuP3u1c1v5aQLk2dQjwy1Qk",
        "a91438456f7c076356abadcc67b92ad777eb20fb9f8887",
        "regtest",
    ),
    (
        "bc1qhxt04s5xnpy0kxw4x99n5hpdf5pmtzpqs52es2",
        "0014b996fac2869848fb19d5314b3a5c2d4d03b58820",
        "main",
    ),
    (
        "bc1qgc9ljrvdf2e0zg9rmmq86xklqwfys7r6wptjlacdgrcdc7sa6ggqu4rrxf",
        "0020460bf90d8d4ab2f120a3dec07d1adf039248787a70572ff70d40f0dc7a1dd210",
        "main",
    ),
    (
        "bc1pve739yap4uxjvfk0jrey69078u0gasm2nwvv483ec6zkzulgw9xqu4w9fd",
        "5120667d1293a1af0d2626cf90f24d15fe3f1e8ec36a9b98ca9e39c6856173e8714c",
        "main",
    ),
    ("bc1zmjtqxkzs89", "5202dc96", "main"),
    (
        "tb1ql4k5ayv7p7w0t0ge7tpntgpkgw53g2payxkszr",
        "0014fd6d4e919e0f9cf5bd19f2c335a03643a914283d",
        "testnet4",
    ),
    (
        "tb1q9jx3x2qqdpempxrcfgyrkjd5fzeacaqj4ua7cs7fe2sfd2wdaueq5wn26y",
        "00202c8d1328006873b098784a083b49b448b3dc7412af3bec43c9caa096a9cdef32",
        "testnet4",
    ),
    (
        "tb1pdswckwd9ym5yf5eyzg8j4jjwnzla8y0tf9cp7aasfkek0u29sz9qfr00yf",
        "51206c1d8b39a526e844d324120f2aca4e98bfd391eb49701f77b04db367f145808a",
        "testnet4",
    ),
    ("tb1r0ecpfxg2udhtc556gqrpwwhk4sw3f0kc", "53107e7014990ae36ebc529a4006173af6ac", "testnet4"),
    (
        "tb1q6mwf89hnqhlu8txjgjfs4s7p93ugffn3k062ll",
        "0014d6dc9396f305ffc3acd244930ac3c12c7884a671",
        "signet",
    ),
    (
        "tb1qafrjalu4d73dql0czau9j6z422434kef235mzljf48ckd5xz3sys09jm97",
        "0020ea472eff956fa2d07df8177859685552ab1adb295469b17e49a9f166d0c28c09",
        "signet",
    ),
    (
        "tb1pwst9qszjrhuv2e7as0flcq9gm698v6gdxzz9e87p07s8rssdx3zqklm3vf",
        "512074165040521df8c567dd83d3fc00a8de8a76690d30845c9fc17fa071c20d3444",
        "signet",
    ),
    (
        "tb1r3ss76jtsuxe8c8c8lxsehnpak55ylrgr345pww076l536ahjr6jsydamx3",
        "53208c21ed4970e1b27c1f07f9a19bcc3db5284f8d038d681739fed7e91d76f21ea5",
        "signet",
    ),
    (
        "bcrt1q65nhlm4hf2ptg3t264al57p7wjxj2c3s6kyt83",
        "0014d5277feeb74a82b4456ad57bfa783e748d256230",
        "regtest",
    ),
    (
        "bcrt1qawvc90lpytw3z3k9etdx54l0exq5f5sqfzu5e45kjnl6slwayeeqx2dyac",
        "0020eb9982bfe122dd1146c5cada6a57efc98144d20048b94cd69694ffa87ddd2672",
        "regtest",
    ),
    (
        "bcrt1p39a4s4vdcw9kqa8w2t0rp7aj8kfxyw7mce5sk5d70x6wnnmpvt7skf2kxy",
        "5120897b58558dc38b6074ee52de30fbb23d92623bdbc6690b51be79b4e9cf6162fd",
        "regtest",
    ),
    (
        "bcrt1s489d9fhmyel0vzfqsrmew4x7r80asuqesm5hgqacy35daflcyufh3j8cgdtflvt99ph05m",
        "6028a9cad2a6fb267ef6092080f79754de19dfd8701986e97403b82468dea7f8271378c8f843569fb165",
        "regtest",
    ),
    (
        "1G9A9j6W8TLuh6dEeVwWeyibK1Uc5MfVFV",
        "76a914a614da54daacdb8861f451a0b7e3c27cdf8a099e88ac",
        "main",
    ),
    (
        "33GA3ZXbw5o5HeUrBEaqkWXFYYZmdxGRRP",
        "a914113ca1afeb49ff3abf176ffa19c2a2b4df19712a87",
        "main",
    ),
    (
        "mwgS2HRbjyfYxFnR1nF9VKLvmdgMfFBmGq",
        "76a914b14ce7070b53cb0e4b5b5f6e253e876990aeca2e88ac",
        "testnet4",
    ),
    (
        "2MwBVrJQ76BdaGD76CTmou8cZzQYLpe4NqU",
        "a9142b2c149cde619eae3d7fe995243b76a3417541aa87",
        "testnet4",
    ),
    (
        "mfnJ8tEkqKNFE5YaHTXFxyHk2mnDK2fvDh",
        "76a91402e6cd77e649ad8b281271f158fc964ca3f66cb088ac",
        "signet",
    ),
    (
        "2My83D67ir7K8PPzeT6mE2oth3ZwNTVRS9F",
        "a9144074d84d32ff62da7b1b3c61925b934bfeb34b0587",
        "signet",
    ),
]

# -- Bitcoin Core key_io_valid.json: (WIF, secret hex, chain, compressed) -------------------
KEY_IO_WIF = [
    (
        "5JuW2AMDYu4xVwRG9DZW18VbzQrGcd5RCgb99sS6ehJsNQXu5b9",
        "8f8943bf956de595665c38ffff23827e17c10cdc1c27a028caae6c9810626198",
        "main",
        False,
    ),
    (
        "L5nJeqKmpHp4P7F8ZYyjwc5a7P4d8EabuGAzfGJk7yC1BJyzNaEd",
        "ff778740f88ddcf102aeb81daee289c044c4a4571c4b6f287400f4b8e0b843f8",
        "main",
        True,
    ),
    (
        "92ZdE5HoLafywnTBbzPxbvRmp75pSfzvdU3XaZGh1cToipgdHVh",
        "80c32d81e91bdea04cd7a3819b32275fc3298af4c7ec87eb0099527d041ced5c",
        "testnet4",
        False,
    ),
    (
        "cV83kKisF3RQSvXbUCm9ox3kaz5JjEUBWcx8tNydfGJcyeUxuH47",
        "e0fcd4ce4e3d0e3de091f21415bb7cd011fac288c42020a879f28c2a4387df9b",
        "testnet4",
        True,
    ),
    (
        "92QuSnywrhsV7WPZChTgSQA23uSmj9MCEEno1eRBDG9sg8M29cX",
        "6cf636ed8ac1bab033b64f66feaba65f70e684731e3f39105605968d3a963801",
        "signet",
        False,
    ),
    (
        "cND53Dhp8eCZqG2ghe8YhSCGesXZ8fE5PGD1khrqNvEi4RBoXhEK",
        "12b5a10f3a11e708dc5412833c47ab7c368a21b9efe19293793ec879ce683018",
        "signet",
        True,
    ),
    (
        "91mn1wYKEB1zyof1VFm8tMtocZx1oBrKKRCu9GCpgZvPmBLEJjp",
        "18a86e5a6c6977ddba0daca7fba5190f67ba56ccdc1b3f31308972236c2e4776",
        "regtest",
        False,
    ),
    (
        "cPisAUdLvqqAr6MYtXnrWvgvyUAwuNyuTvZkDGw6miPhZdaiSDNH",
        "3fdfec1371cedcdb8c190ca6ff8ad603f817edc0d93c2a687c7b36dd66e70f2a",
        "regtest",
        True,
    ),
    (
        "5HsL2nZuEebU5nM3RxNVQD9GcAnvNMahqQskf4fkqHe54zwd14e",
        "06e8649790a90615a46d22dd762e0c42615336745356c2e16147c0f3d46b40d5",
        "main",
        False,
    ),
    (
        "KwuVvu6hsuEMHrfFWJQV64tRrWX3QzqHH18JuAHYqYV6dqBvNKxd",
        "147804bf8a0dfff35939a611c7f5a60ac107f33f33d6059f273d2079ab1d90f2",
        "main",
        True,
    ),
    (
        "921M1RNxghFcsVGqAJksQVbSgx36Yz4u6vebfz1wDujNvgNt93B",
        "3777b341c45e2a9b9bf6bfb71dc7d129f64f1b9406ed4f93ade8f56065f1b732",
        "testnet4",
        False,
    ),
    (
        "cNEnbfF2fcxmmCLWqMAaq6fxJvVkwMbyU3kCbpQznz4Z1j6TZDGb",
        "1397b0d4a03e1ab2c54dd9af99ce1ecbfb90c80a58886da95e1181a55703d96b",
        "testnet4",
        True,
    ),
    (
        "93BcpCMKPmFCuY8bqS4k3HFrhJ1Afxi4uSsEeJFvX86GYW7PC7W",
        "d27d1b6ef55ca2e4d475b5276f2dbb85f7a6459dceeb89c67b776fd3bb974452",
        "signet",
        False,
    ),
    (
        "cUtwbyxoL1owPxUafgH2meEpydeywjhnTYv2mJaFHHchz39AaEgy",
        "da3ed4ef1647e1733ec076919cab6156077ed9532e7c365acc425747e198b3e1",
        "signet",
        True,
    ),
    (
        "927zPWny2SiNaUmHF5NnGQXQWDwbByfFzXGgu88j91ZoutSosvE",
        "468e0284f230153db8687d8ec23db079a5b67d72ca04174b3867b13e4ea9945e",
        "regtest",
        False,
    ),
    (
        "cRez45VGSp5EXNqm89K3NJJPSKKapJg5Kbw3atxr2337x2gtgYed",
        "798d87586cffbe8c545ab374454e403b1eb831501ebe89f3c3b02f3137bd7b46",
        "regtest",
        True,
    ),
]

# -- Bitcoin Core base58_encode_decode.json ------------------------------------------------
BASE58_VECTORS = [
    ("", ""),
    ("61", "2g"),
    ("626262", "a3gV"),
    ("636363", "aPEr"),
    ("73696d706c792061206c6f6e6720737472696e67", "2cFupjhnEsSn59qHXstmK2ffpLv2"),
    ("00eb15231dfceb60925886b67d065299925915aeb172c06647", "1NS17iag9jJgTHD1VXjvLCEnZuQ3rJDE9L"),
    ("516b6fcd0f", "ABnLTmg"),
    ("bf4f89001e670274dd", "3SEo3LWLoPntC"),
    ("572e4794", "3EFU7m"),
    ("ecac89cad93923c02321", "EJDM8drfXA6uyA"),
    ("10c8511e", "Rt5zm"),
    ("00000000000000000000", "1111111111"),
    ("00" * 40, "1" * 40),
    ("00" * 39 + "01", "1" * 39 + "2"),
    ("00" * 86 + "ec39d04c37e71e5d591881f6", "1" * 86 + "5TYzLYH1udmLdzCLM"),
    (
        "000111d38e5fc9071ffcd20b4a763cc9ae4f252bb4e48fd66a835e252ada93ff480d6dd43dc62a641155a5",
        "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz",
    ),
    (
        bytes(range(256)).hex(),
        "1cWB5HCBdLjAuqGGReWE3R3CguuwSjw6RHn39s2yuDRTS5NsBgNiFpWgAnEx6VQi8csexkgYw3mdYrMHr8x9i7aE"
        "wP8kZ7vccXWqKDvGv3u1GxFKPuAkn8JCPPGDMf3vMMnbzm6Nh9zh1gcNsMvH3ZNLmP5fSG6DGbbi2tuwMWPthr4b"
        "oWwCxf7ewSgNQeacyozhKDDQQ1qL5fQFUW52QKUZDZ5fw3KXNQJMcNTcaB723LchjeKun7MuGW5qyCBZYzA1Kjof"
        "N1gYBV3NqyhQJ3Ns746GNuf9N2pQPmHz4xpnSrrfCvy6TVVz5d4PdrjeshsWQwpZsZGzvbdAdN8MKV5QsBDY",
    ),
    ("271F359E", "zzzzy"),
    ("271F359F", "zzzzz"),
    ("271F35A0", "211111"),
    ("271F35A1", "211112"),
]

# -- BIP-173 / BIP-350 string-level vectors ------------------------------------------------
VALID_BECH32 = [
    "A12UEL5L",
    "a12uel5l",
    "an83characterlonghumanreadablepartthatcontainsthenumber1andtheexcludedcharactersbio1tt5tgs",
    "abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw",
    "11qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqc8247j",
    "split1checkupstagehandshakeupstreamerranterredcaperred2y9e3w",
    "?1ezyfcl",
]
VALID_BECH32M = [
    "A1LQFN3A",
    "a1lqfn3a",
    "an83characterlonghumanreadablepartthatcontainsthetheexcludedcharactersbioandnumber11sg7hg6",
    "abcdef1l7aum6echk45nj3s0wdvt2fg8x9yrzpqzd3ryx",
    "11llllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllludsr8",
    "split1checkupstagehandshakeupstreamerranterredcaperredlc445v",
    "?1v759aa",
]
INVALID_BECH32 = [  # BIP-173, with the reason the BIP gives
    ("\x201nwldj5", "out of range"),
    ("\x7f1axkwrx", "out of range"),
    ("\x801eym55h", "out of range"),
    (
        "an84characterslonghumanreadablepartthatcontainsthenumber1andtheexcludedcharactersbio1569pvx",
        "too long",
    ),
    ("pzry9x0s0muk", "separator"),
    ("1pzry9x0s0muk", "empty"),
    ("x1b4n0q5v", "invalid bech32 data character"),
    ("li1dgmt3", "checksum too short"),
    ("de1lg7wt\xff", "out of range"),
    ("A1G7SGD8", "bad bech32 checksum"),
    ("10a06t8", "empty"),
    ("1qzzfhee", "empty"),
]
INVALID_BECH32M = [  # BIP-350
    ("\x201xj0phk", "out of range"),
    ("\x7f1g6xzxy", "out of range"),
    ("\x801vctc34", "out of range"),
    (
        "an84characterslonghumanreadablepartthatcontainsthetheexcludedcharactersbioandnumber11d6pts4",
        "too long",
    ),
    ("qyrz8wqd2c9m", "separator"),
    ("1qyrz8wqd2c9m", "empty"),
    ("y1b0jsk6g", "invalid bech32 data character"),
    ("lt1igcx5c0", "invalid bech32 data character"),
    ("in1muywd", "checksum too short"),
    ("mm1crxm3i", "invalid bech32 data character"),
    ("au1s5cgom", "invalid bech32 data character"),
    ("M1VUXWEZ", "bad bech32 checksum"),
    ("16plkw9", "empty"),
    ("1p2gdwpf", "empty"),
]

# -- BIP-350 segwit address vectors (address, scriptPubKey) -------------------------------
VALID_SEGWIT = [
    ("BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4", "0014751e76e8199196d454941c45d1b3a323f1433bd6"),
    (
        "tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7",
        "00201863143c14c5166804bd19203356da136c985678cd4d27a1b8c6329604903262",
    ),
    (
        "bc1pw508d6qejxtdg4y5r3zarvary0c5xw7kw508d6qejxtdg4y5r3zarvary0c5xw7kt5nd6y",
        "5128751e76e8199196d454941c45d1b3a323f1433bd6751e76e8199196d454941c45d1b3a323f1433bd6",
    ),
    ("BC1SW50QGDZ25J", "6002751e"),
    ("bc1zw508d6qejxtdg4y5r3zarvaryvaxxpcs", "5210751e76e8199196d454941c45d1b3a323"),
    (
        "tb1qqqqqp399et2xygdj5xreqhjjvcmzhxw4aywxecjdzew6hylgvsesrxh6hy",
        "0020000000c4a5cad46221b2a187905e5266362b99d5e91c6ce24d165dab93e86433",
    ),
    (
        "tb1pqqqqp399et2xygdj5xreqhjjvcmzhxw4aywxecjdzew6hylgvsesf3hn0c",
        "5120000000c4a5cad46221b2a187905e5266362b99d5e91c6ce24d165dab93e86433",
    ),
    (
        "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0",
        "512079be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798",
    ),
]
INVALID_SEGWIT = [  # BIP-350 (then BIP-173's, all still invalid), with the expected complaint
    ("tc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vq5zuyut", "unknown address prefix"),
    ("bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqh2y7hd", "bech32m checksum"),
    ("tb1z0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqglt7rf", "bech32m checksum"),
    ("BC1S0XLXVLHEMJA6C4DQV22UAPCTQUPFHLXM9H8Z3K2E72Q4K9HCZ7VQ54WELL", "bech32m checksum"),
    ("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kemeawh", "bech32 checksum, not bech32m"),
    ("tb1q0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vq24jc47", "not bech32m"),
    ("bc1p38j9r5y49hruaue7wxjce0updqjuyyx0kh56v8s25huc6995vvpql3jow4", "data character"),
    ("BC130XLXVLHEMJA6C4DQV22UAPCTQUPFHLXM9H8Z3K2E72Q4K9HCZ7VQ7ZWS8R", "witness version 17"),
    ("bc1pw5dgrnzv", "program length 1"),
    (
        "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7v8n0nx0muaewav253zgeav",
        "program length 41",
    ),
    ("BC1QR508D6QEJXTDG4Y5R3ZARVARYV98GJ9P", "v0 program length 16"),
    ("tb1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vq47Zagq", "mixes upper and lower"),
    ("bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7v07qwwzcrf", "padding"),
    ("tb1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vpggkg4j", "padding bits are not zero"),
    ("bc1gmk9yu", "empty data section"),
    ("tc1qw508d6qejxtdg4y5r3zarvary0c5xw7kg3g4ty", "unknown address prefix"),
    ("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t5", "bad bech32 checksum"),
    ("BC13W508D6QEJXTDG4Y5R3ZARVARY0C5XW7KN40WF2", "witness version 17"),
    ("bc1rw5uspcuh", "program length 1"),
    (
        "bc10w508d6qejxtdg4y5r3zarvary0c5xw7kw508d6qejxtdg4y5r3zarvary0c5xw7kw5rljs90",
        "program length 41",
    ),
    ("tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sL5k7", "mixes upper and lower"),
    ("bc1zw508d6qejxtdg4y5r3zarvaryvqyzf3du", "padding"),
    ("tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3pjxtptv", "padding bits are not zero"),
    # BIP-173's v1+ addresses use the bech32 constant, which BIP-350 makes invalid.
    (
        "bc1pw508d6qejxtdg4y5r3zarvary0c5xw7kw508d6qejxtdg4y5r3zarvary0c5xw7k7grplx",
        "bech32m checksum",
    ),
    ("BC1SW50QA3JX3S", "bech32m checksum"),
    ("bc1zw508d6qejxtdg4y5r3zarvaryvg6kdaj", "bech32m checksum"),
]


def _network_for_hrp(address: str) -> Network:
    hrp = address.lower().split("1")[0]
    return {"bc": Network.MAINNET, "tb": Network.TESTNET, "bcrt": Network.REGTEST}[hrp]


# -- key_io_valid -------------------------------------------------------------------------


@pytest.mark.parametrize(("address", "script_hex", "chain"), KEY_IO_ADDRESSES)
def test_core_key_io_addresses(address: str, script_hex: str, chain: str) -> None:
    network = CHAINS[chain]
    assert address_to_script(address, network).hex() == script_hex
    assert script_to_address(bytes.fromhex(script_hex), network) == address


@pytest.mark.parametrize(
    ("address", "script_hex", "chain"),
    [v for v in KEY_IO_ADDRESSES if v[0].startswith(("bc1", "tb1", "bcrt1"))],
)
def test_core_key_io_bech32_case_flip(address: str, script_hex: str, chain: str) -> None:
    """Core's tryCaseFlip: bech32 addresses are also valid in upper case."""
    assert address_to_script(address.upper(), CHAINS[chain]).hex() == script_hex


@pytest.mark.parametrize(("wif", "secret_hex", "chain", "compressed"), KEY_IO_WIF)
def test_core_key_io_wif(wif: str, secret_hex: str, chain: str, compressed: bool) -> None:
    key = wif_to_private_key(wif)
    assert key.secret.hex() == secret_hex
    assert key.compressed is compressed
    assert key.network is CHAINS[chain].kind
    assert private_key_to_wif(key.secret, CHAINS[chain], compressed) == wif


def test_wif_unpacks_as_a_triple() -> None:
    secret, compressed, network = wif_to_private_key(
        "cV83kKisF3RQSvXbUCm9ox3kaz5JjEUBWcx8tNydfGJcyeUxuH47"
    )
    assert (len(secret), compressed, network) == (32, True, Network.TESTNET)


def test_wif_refusals() -> None:
    good = "KwuVvu6hsuEMHrfFWJQV64tRrWX3QzqHH18JuAHYqYV6dqBvNKxd"
    with pytest.raises(AddressError, match="bad base58 checksum"):
        wif_to_private_key(good[:-1] + ("e" if good[-1] != "e" else "f"))
    with pytest.raises(AddressError, match="unknown WIF version"):  # an address is not a key
        wif_to_private_key("1FsSia9rv4NeEwvJ2GvXrX7LyxYspbN2mo")
    with pytest.raises(AddressError, match=r"1\.\.n-1"):
        private_key_to_wif(bytes(32), Network.MAINNET)


# -- base58 -------------------------------------------------------------------------------


@pytest.mark.parametrize(("hex_data", "encoded"), BASE58_VECTORS)
def test_core_base58_vectors(hex_data: str, encoded: str) -> None:
    assert b58encode(bytes.fromhex(hex_data)) == encoded
    assert b58decode(encoded) == bytes.fromhex(hex_data)


def test_base58_refusals() -> None:
    with pytest.raises(AddressError, match="invalid base58 character '0'"):
        b58decode("3EFU0m")
    with pytest.raises(AddressError, match="bad base58 checksum"):
        b58check_decode("1FsSia9rv4NeEwvJ2GvXrX7LyxYspbN2mp")
    with pytest.raises(AddressError, match="too short"):
        b58check_decode("2g")
    # base58check of Core's P2PKH vector: 0x00 || hash160
    payload = bytes.fromhex("00a31c06bd463e3923bc1aadbde48b16976c080717")
    assert b58check_encode(payload) == "1FsSia9rv4NeEwvJ2GvXrX7LyxYspbN2mo"


# -- bech32 strings -----------------------------------------------------------------------


@pytest.mark.parametrize("text", VALID_BECH32)
def test_bip173_valid_bech32(text: str) -> None:
    assert bech32_decode(text)[2] is Bech32Encoding.BECH32


@pytest.mark.parametrize("text", VALID_BECH32M)
def test_bip350_valid_bech32m(text: str) -> None:
    assert bech32_decode(text)[2] is Bech32Encoding.BECH32M


@pytest.mark.parametrize(("text", "reason"), INVALID_BECH32 + INVALID_BECH32M)
def test_bip173_bip350_invalid_strings(text: str, reason: str) -> None:
    with pytest.raises(AddressError, match=reason):
        bech32_decode(text)


# -- segwit addresses ---------------------------------------------------------------------


@pytest.mark.parametrize(("address", "script_hex"), VALID_SEGWIT)
def test_bip350_valid_segwit_addresses(address: str, script_hex: str) -> None:
    network = _network_for_hrp(address)
    assert address_to_script(address, network).hex() == script_hex
    assert script_to_address(bytes.fromhex(script_hex), network) == address.lower()


@pytest.mark.parametrize(("address", "reason"), INVALID_SEGWIT)
def test_bip173_bip350_invalid_segwit_addresses(address: str, reason: str) -> None:
    for network in (Network.MAINNET, Network.TESTNET):
        with pytest.raises(AddressError, match=reason):
            address_to_script(address, network)


def test_segwit_decode_returns_parts() -> None:
    hrp, version, program = segwit_decode("BC1SW50QGDZ25J")
    assert (hrp, version, program.hex()) == ("bc", 16, "751e")


# -- networks -----------------------------------------------------------------------------


def test_wrong_network_names_both() -> None:
    with pytest.raises(AddressError, match=r"address is for testnet.*expected mainnet"):
        address_to_script("tb1qcrh3yqn4nlleplcez2yndq2ry8h9ncg3qh7n54", Network.MAINNET)
    with pytest.raises(AddressError, match="address is for mainnet, expected testnet"):
        address_to_script("bc1qvyq0cc6rahyvsazfdje0twl7ez82ndmuac2lhv", Network.TESTNET)
    with pytest.raises(AddressError, match="address is for mainnet, expected regtest"):
        address_to_script("36j4NfKv6Akva9amjWrLG6MuSQym1GuEmm", Network.REGTEST)
    with pytest.raises(AddressError, match=r"address is for testnet.*expected mainnet"):
        address_to_script("mzK2FFDEhxqHcmrJw1ysqFkVyhUULo45hZ", Network.MAINNET)
    with pytest.raises(AddressError, match="address is for regtest, expected signet"):
        address_to_script("bcrt1qdavt4j2sd7dlhqsavtnfxvzppw6k7qy97tmnu9", Network.SIGNET)
    with pytest.raises(AddressError, match="address is for testnet/signet, expected regtest"):
        address_to_script("tb1q3vya2h5435jkugq2few7dmktlrwq4ejmfaw7kr", Network.REGTEST)


def test_test_networks_share_prefixes() -> None:
    # Core's signet vector decodes on testnet and vice versa; regtest takes testnet base58.
    signet = "tb1q3vya2h5435jkugq2few7dmktlrwq4ejmfaw7kr"
    assert address_to_script(signet, Network.TESTNET).hex() == (
        "00148b09d55e958d256e200a4e5de6eecbf8dc0ae65b"
    )
    testnet4 = "2NC2hEhe28ULKAJkW5MjZ3jtTMJdvXmByvK"
    for network in (Network.SIGNET, Network.REGTEST):
        assert address_to_script(testnet4, network).hex() == (
            "a914ce0bba75891ff9ec60148d4bd4a09ee2dc5c933187"
        )


def test_unknown_base58_version() -> None:
    text = b58check_encode(bytes([0x30]) + bytes(20))  # a Litecoin-style version byte
    with pytest.raises(AddressError, match="unknown base58 address version byte 0x30"):
        address_to_script(text, Network.MAINNET)
    with pytest.raises(AddressError, match="empty address"):
        address_to_script("  ", Network.MAINNET)


@pytest.mark.parametrize(
    "script_hex",
    [
        "6a0568656c6c6f",  # OP_RETURN "hello"
        # bare 1-of-2 multisig (BIP-383 multi() vector)
        "512103a34b99f22c790c4e36b2b3c2c35a36db06226e41c692fc82b8b56ac1c540c5bd4104a34b99f22c790c4e"
        "36b2b3c2c35a36db06226e41c692fc82b8b56ac1c540c5bd5b8dec5235a0fa8722476c7709c02559e3aa73aa0391"
        "8ba2d492eea75abea23552ae",
        # P2PK (BIP-381 pk() vector)
        "2103a34b99f22c790c4e36b2b3c2c35a36db06226e41c692fc82b8b56ac1c540c5bdac",
        "0019" + "00" * 25,  # witness v0 with a 25-byte program: no address exists
        "",
    ],
)
def test_scripts_without_address(script_hex: str) -> None:
    assert script_to_address(bytes.fromhex(script_hex), Network.MAINNET) is None


@pytest.mark.parametrize(
    ("name", "network"),
    [
        ("main", Network.MAINNET),
        ("mainnet", Network.MAINNET),
        ("bitcoin", Network.MAINNET),
        ("test", Network.TESTNET),
        ("testnet", Network.TESTNET),
        ("testnet4", Network.TESTNET),
        ("signet", Network.SIGNET),
        ("regtest", Network.REGTEST),
        ("  Signet ", Network.SIGNET),
    ],
)
def test_network_by_name(name: str, network: Network) -> None:
    assert network_by_name(name) is network


def test_network_parameters() -> None:
    assert network_by_name("regtest").hrp == "bcrt"
    assert (Network.MAINNET.p2pkh_version, Network.MAINNET.p2sh_version) == (0x00, 0x05)
    assert (Network.SIGNET.p2pkh_version, Network.SIGNET.p2sh_version) == (0x6F, 0xC4)
    assert (Network.MAINNET.wif_version, Network.REGTEST.wif_version) == (0x80, 0xEF)
    assert Network.MAINNET.xpub_version == 0x0488B21E
    assert Network.TESTNET.xprv_version == 0x04358394
    assert Network.SIGNET.kind is Network.TESTNET
    with pytest.raises(ValueError, match="unknown network 'litecoin'"):
        network_by_name("litecoin")
