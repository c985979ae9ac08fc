"""Payout batch CSV: every rule, with line numbers, all problems at once, fail closed."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from online_coordinator import payouts
from online_coordinator.payouts import (
    MAX_CSV_BYTES,
    CsvProblem,
    Payout,
    PayoutsError,
    parse_payouts,
)
from shared.bitcoin.address import Network, script_to_address
from shared.bitcoin.amount import MAX_MONEY, dust_threshold
from shared.bitcoin.script import (
    OP_RETURN,
    p2pkh_script,
    p2sh_script,
    p2wpkh_script,
    witness_program_script,
)

MAIN = Network.MAINNET
PUBKEY = bytes.fromhex("02" + "11" * 32)

SCRIPTS = {
    "p2wpkh": p2wpkh_script(PUBKEY),
    "p2wsh": witness_program_script(0, bytes(range(32))),
    "p2tr": witness_program_script(1, bytes(range(1, 33))),
    "p2pkh": p2pkh_script(bytes(range(20))),
    "p2sh": p2sh_script(bytes(range(2, 22))),
}


def addr(kind: str = "p2wpkh", network: Network = MAIN, salt: int = 0) -> str:
    """A valid address of ``kind`` on ``network``; ``salt`` makes distinct ones."""
    script = SCRIPTS[kind]
    if salt:
        script = script[:-1] + bytes([(script[-1] + salt) % 256])
        if kind in ("p2pkh", "p2sh"):  # the last byte is an opcode: alter the hash instead
            script = SCRIPTS[kind][:3] + bytes([salt % 256]) + SCRIPTS[kind][4:]
    address = script_to_address(script, network)
    assert address is not None
    return address


def csv_bytes(*lines: str, newline: str = "\n") -> bytes:
    return newline.join(lines).encode()


def problems_of(data: bytes, network: Network = MAIN) -> list[tuple[int, str]]:
    with pytest.raises(PayoutsError) as info:
        parse_payouts(data, network)
    return [(p.line, p.message) for p in info.value.problems]


def only_problem(data: bytes, network: Network = MAIN) -> tuple[int, str]:
    found = problems_of(data, network)
    assert len(found) == 1, found
    return found[0]


# -- well-formed files --------------------------------------------------------------------


def test_parses_rows_with_header_bom_crlf_and_quotes() -> None:
    data = "\ufeff" + "\r\n".join(
        [
            "address,amount,reference",
            f"{addr('p2wpkh')},0.5,INV-1",
            f'"{addr("p2tr")}","20999998.49999999","INV, with comma"',
            f'{addr("p2pkh")},1,"say ""hi"""',
        ]
    )
    result = parse_payouts(data.encode(), MAIN)
    assert result == [
        Payout(2, addr("p2wpkh"), SCRIPTS["p2wpkh"], 50_000_000, "INV-1"),
        Payout(3, addr("p2tr"), SCRIPTS["p2tr"], 2_099_999_849_999_999, "INV, with comma"),
        Payout(4, addr("p2pkh"), SCRIPTS["p2pkh"], 100_000_000, 'say "hi"'),
    ]


def test_header_is_optional_and_line_numbers_are_physical() -> None:
    data = csv_bytes(f"{addr()},0.1,a", "", "   ", ",,", f"{addr('p2sh')},0.2,b")
    result = parse_payouts(data, MAIN)
    assert [(p.line, p.amount) for p in result] == [(1, 10_000_000), (5, 20_000_000)]


@pytest.mark.parametrize("header", ["ADDRESS,Amount,REFERENCE", " address , amount ,reference "])
def test_header_matches_case_insensitively_and_trimmed(header: str) -> None:
    result = parse_payouts(csv_bytes(header, f"{addr()},1,a"), MAIN)
    assert [p.line for p in result] == [2]


def test_header_anywhere_but_line_1_is_data() -> None:
    found = problems_of(csv_bytes("", "address,amount,reference", f"{addr()},1,a"))
    assert found == [
        (2, "address 'address' refused: bad base58 checksum"),
        (2, "amount 'amount' is not a BTC amount such as 0.015 (digits, '.', up to 8 decimals)"),
    ]


@pytest.mark.parametrize(
    "header",
    ["address,amount,ref", "Address,Amount (BTC),Reference", "address,amount_btc,memo"],
)
def test_a_header_spelled_as_spreadsheets_do_is_a_header(header: str) -> None:
    """Issue 18: a capitalised or annotated header was read as data (bad base58 checksum)."""
    assert [p.line for p in parse_payouts(csv_bytes(header, f"{addr()},1,a"), MAIN)] == [2]


@pytest.mark.parametrize("amount", ["Amount (sats)", "amount_sats", "Amount in satoshis"])
def test_a_header_saying_satoshis_is_refused_because_amounts_are_btc(amount: str) -> None:
    found = problems_of(csv_bytes(f"address,{amount},reference", f"{addr()},1,a"))
    assert found == [
        (
            1,
            f"the amount column is headed {amount!r}, but amounts are BTC such as 0.015, "
            "not satoshis",
        )
    ]


def test_a_first_line_that_names_no_columns_is_data() -> None:
    data = csv_bytes("payee,value,ref", f"{addr()},1,a")
    found = problems_of(data)
    assert {line for line, _ in found} == {1}


def test_multiline_quoted_field_keeps_later_line_numbers() -> None:
    data = csv_bytes(f'{addr()},1,"two', 'lines"', f"{addr('p2sh')},1,x", f"{addr('p2sh')},1,y")
    found = problems_of(data)
    assert (1, "reference 'two\\nlines' contains a non-printable character U+000A") in found
    assert any(line == 4 and "also on line 3" in message for line, message in found)


def test_surrounding_whitespace_around_address_and_amount_is_trimmed() -> None:
    [payout] = parse_payouts(csv_bytes(f" {addr()} , 0.5 ,a"), MAIN)
    assert payout.address == addr()
    assert payout.amount == 50_000_000


# -- amounts ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        ("-1", "amount '-1' is negative"),
        ("-0.5", "amount '-0.5' is negative"),
        ("0", "amount '0' is zero"),
        ("0.00000000", "amount '0.00000000' is zero"),
        ("1.123456789", "amount '1.123456789' is over-precise: more than 8 decimal places"),
        ("0.000000010", "amount '0.000000010' is over-precise: more than 8 decimal places"),
        ("1e-3", "amount '1e-3' uses exponent notation; write it as a plain decimal"),
        ("2E5", "amount '2E5' uses exponent notation; write it as a plain decimal"),
        ("nan", "amount 'nan' is not a number"),
        ("-Infinity", "amount '-Infinity' is not a number"),
        ("inf", "amount 'inf' is not a number"),
        ("1,000", "amount '1,000' has a thousands or decimal separator other than one '.'"),
        ("1 000.5", "amount '1 000.5' has a thousands or decimal separator other than one '.'"),
        ("1_000", "amount '1_000' has a thousands or decimal separator other than one '.'"),
        ("1'000", "amount \"1'000\" has a thousands or decimal separator other than one '.'"),
        ("1.000.000", "amount '1.000.000' has a thousands or decimal separator other than one '.'"),
        ("0,5", "amount '0,5' has a thousands or decimal separator other than one '.'"),
        ("21000000.00000001", "amount '21000000.00000001' is over 21,000,000 BTC"),
        ("210000000", "amount '210000000' is over 21,000,000 BTC"),
        ("0" * 56 + "21000001", "amount '" + "0" * 56 + "21000001' is over 21,000,000 BTC"),
        ("9" * 5000, "amount '" + "9" * 90 + "…' is 5000 characters, too long for an amount"),
        ("", "amount is empty"),
    ],
)
def test_amount_rules(amount: str, expected: str) -> None:
    assert only_problem(csv_bytes(f'{addr()},"{amount}",ref')) == (1, expected)


@pytest.mark.parametrize("amount", [".5", "5.", "+1", "0x10", "١", "1.5 BTC", "½"])
def test_amounts_that_are_not_plain_decimals(amount: str) -> None:
    assert only_problem(csv_bytes(f"{addr()},{amount},ref")) == (
        1,
        f"amount {amount!r} is not a BTC amount such as 0.015 (digits, '.', up to 8 decimals)",
    )


@pytest.mark.parametrize(
    "amount", ["1" * 100_000 + "x", "1" + "," * 100_000 + "x", "9" * 100_000 + "e", "-1" * 50_000]
)
def test_huge_amount_fields_are_refused_without_a_slow_search(amount: str) -> None:
    """A 100,000-character field once meant a quadratic regex search (minutes per row)."""
    line, message = only_problem(csv_bytes(f'{addr()},"{amount}",ref'))
    assert line == 1
    assert message.endswith(f"is {len(amount)} characters, too long for an amount")


@pytest.mark.parametrize(
    ("amount", "sats"),
    [
        ("0.00000294", 294),
        ("0.1", 10_000_000),
        ("00012.5", 1_250_000_000),
        ("21000000", MAX_MONEY),
        ("21000000.00000000", MAX_MONEY),
    ],
)
def test_amount_conversion_is_exact(amount: str, sats: int) -> None:
    [payout] = parse_payouts(csv_bytes(f"{addr()},{amount},r"), MAIN)
    assert payout.amount == sats


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=294, max_value=MAX_MONEY), st.integers(min_value=0, max_value=3))
def test_amount_round_trips_through_btc_text(sats: int, pad: int) -> None:
    text = f"{sats // 100_000_000}.{sats % 100_000_000:08d}"
    text = "0" * pad + (text.rstrip("0").rstrip(".") if pad % 2 else text)
    [payout] = parse_payouts(csv_bytes(f"{addr()},{text},r"), MAIN)
    assert payout.amount == sats


# -- dust ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "threshold"),
    [("p2wpkh", 294), ("p2wsh", 330), ("p2tr", 330), ("p2pkh", 546), ("p2sh", 540)],
)
def test_dust_per_script_type(kind: str, threshold: int) -> None:
    assert dust_threshold(SCRIPTS[kind]) == threshold
    below = f"0.{threshold - 1:08d}"
    line, message = only_problem(csv_bytes(f"{addr(kind)},{below},r"))
    assert line == 1
    assert message == (
        f"amount {below} BTC ({threshold - 1} sats) is below the dust threshold of "
        f"{threshold} sats for a {kind} output"
    )
    [payout] = parse_payouts(csv_bytes(f"{addr(kind)},0.{threshold:08d},r"), MAIN)
    assert payout.amount == threshold


@pytest.mark.parametrize(
    ("version", "length", "threshold"),
    [(2, 32, 330), (1, 32, 330), (16, 2, 240), (3, 40, 354), (1, 20, 294)],
)
def test_dust_of_other_witness_programs_follows_cores_formula(
    version: int, length: int, threshold: int
) -> None:
    """(8 + 1 + script) + 67 spend bytes, at 3 sat/vB, as Core's GetDustThreshold."""
    script = witness_program_script(version, bytes(length))
    assert dust_threshold(script) == threshold == 3 * (8 + 1 + len(script) + 67)


def test_dust_of_other_witness_version_in_a_file() -> None:
    address = script_to_address(witness_program_script(2, bytes(32)), MAIN)
    assert only_problem(csv_bytes(f"{address},0.00000329,r"))[1].endswith(
        "dust threshold of 330 sats for a witness_unknown output"
    )


def test_op_return_is_never_dust() -> None:
    assert dust_threshold(bytes([OP_RETURN, 1, 0])) == 0


# -- references ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("", "reference is empty"),
        ("x" * 65, f"reference '{'x' * 65}' is 65 characters, more than 64"),
        (" INV-1", "reference ' INV-1' has leading or trailing whitespace"),
        ("INV-1 ", "reference 'INV-1 ' has leading or trailing whitespace"),
        ("INV\t1", "reference 'INV\\t1' contains a non-printable character U+0009"),
        ("INV\u202e1", "reference 'INV\\u202e1' contains a non-printable character U+202E"),
        ("a\u00a0b", "reference 'a\\xa0b' contains a non-printable character U+00A0"),
    ],
)
def test_reference_rules(reference: str, expected: str) -> None:
    assert only_problem(csv_bytes(f'{addr()},1,"{reference}"')) == (1, expected)


@pytest.mark.parametrize("reference", ["x" * 64, "Zahlung für März", "a b", "#1/2-3_4"])
def test_reference_accepts_printable_text(reference: str) -> None:
    [payout] = parse_payouts(csv_bytes(f"{addr()},1,{reference}"), MAIN)
    assert payout.reference == reference


# -- duplicates ---------------------------------------------------------------------------


def test_duplicate_reference_names_both_lines() -> None:
    data = csv_bytes(
        f"{addr(salt=1)},1,INV-1",
        f"{addr(salt=2)},1,INV-2",
        f"{addr(salt=3)},1,INV-1",
        f"{addr(salt=4)},1,INV-1",
    )
    assert problems_of(data) == [
        (3, "reference 'INV-1' is also on line 1; each may appear only once"),
        (4, "reference 'INV-1' is also on line 1; each may appear only once"),
    ]


def test_duplicate_address_names_both_lines_even_in_other_case() -> None:
    """Bitcoin Core's sendmany refuses a duplicated address; so do we, by script."""
    data = csv_bytes(f"{addr()},1,a", f"{addr('p2sh')},1,b", f"{addr().upper()},2,c")
    assert problems_of(data) == [
        (3, f"address {addr().upper()!r} is also on line 1; each may appear only once"),
    ]


# -- addresses and networks ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("wallet", "kind", "payee", "owner"),
    [
        (Network.MAINNET, "p2wpkh", Network.TESTNET, "testnet/signet"),
        (Network.MAINNET, "p2tr", Network.REGTEST, "regtest"),
        (Network.MAINNET, "p2pkh", Network.TESTNET, "testnet/signet/regtest"),
        (Network.TESTNET, "p2wsh", Network.MAINNET, "mainnet"),
        (Network.TESTNET, "p2sh", Network.MAINNET, "mainnet"),
        (Network.REGTEST, "p2wpkh", Network.SIGNET, "testnet/signet"),
        (Network.SIGNET, "p2tr", Network.REGTEST, "regtest"),
    ],
)
def test_wrong_network_address_names_both_networks(
    wallet: Network, kind: str, payee: Network, owner: str
) -> None:
    address = addr(kind, payee)
    assert only_problem(csv_bytes(f"{address},1,r"), wallet) == (
        1,
        f"address {address!r} refused: address is for {owner}, expected {wallet.label}",
    )


@pytest.mark.parametrize("network", list(Network))
def test_addresses_of_every_kind_decode_on_their_network(network: Network) -> None:
    lines = [f"{addr(kind, network)},1,{kind}" for kind in SCRIPTS]
    result = parse_payouts(csv_bytes(*lines), network)
    assert [p.script_pubkey for p in result] == list(SCRIPTS.values())


def test_bad_checksum_and_empty_address() -> None:
    good = addr()
    broken = good[:-1] + ("q" if good[-1] != "q" else "p")
    assert problems_of(csv_bytes(f"{broken},1,a", ",1,b")) == [
        (1, f"address {broken!r} refused: bad bech32 checksum"),
        (2, "address '' refused: empty address"),
    ]


# -- file-level rules ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "data", [b"", b"\xef\xbb\xbf", b"address,amount,reference\r\n", b"\n\n  \n,,\n"]
)
def test_no_payouts(data: bytes) -> None:
    assert only_problem(data) == (0, "the file has no payouts")


def test_total_over_max_money() -> None:
    data = csv_bytes(f"{addr()},21000000,a", f"{addr('p2sh')},0.00001,b")
    assert only_problem(data) == (
        0,
        "the payouts total 21000000.00001000 BTC, more than 21,000,000 BTC",
    )


def test_too_many_payouts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(payouts, "MAX_PAYOUTS", 3)
    lines = [f"{addr(salt=i)},1,r{i}" for i in range(1, 4)]
    assert len(parse_payouts(csv_bytes(*lines), MAIN)) == 3
    lines += ["not an address,-1,r1", "x,y,z"]  # past the limit: not read at all
    assert only_problem(csv_bytes(*lines)) == (
        0,
        "the file has more than 3 payouts, the most per batch",
    )


def test_real_payout_limit_is_enforced() -> None:
    rows = ["x,1,r"] * (payouts.MAX_PAYOUTS + 1)
    found = problems_of(csv_bytes(*rows))
    assert (0, "the file has more than 10,000 payouts, the most per batch") in found


def test_oversized_input_is_refused_without_reading_it() -> None:
    """Invalid UTF-8 throughout, yet the only problem is the size: nothing was decoded."""
    data = b"\xff" * (MAX_CSV_BYTES + 1)
    assert only_problem(data) == (
        0,
        f"the file is {MAX_CSV_BYTES + 1:,} bytes, more than the {MAX_CSV_BYTES:,} limit",
    )


def test_invalid_utf8_names_the_line_and_other_rows_are_still_checked() -> None:
    data = csv_bytes(f"{addr()},1,a", f"{addr('p2sh')},1,b", "") + b"bc1q\xff,1,c\nx,1,d\n"
    found = problems_of(data)
    assert found[0] == (3, "not valid UTF-8 (byte 0xff); save the file as UTF-8")
    assert found[1][0] == 4 and found[1][1].startswith("address 'x' refused")
    assert len(found) == 2


def test_latin1_export_is_refused_by_line() -> None:
    data = f"{addr()},1,Zahlung März\n".encode("latin-1")
    assert only_problem(data) == (1, "not valid UTF-8 (byte 0xe4); save the file as UTF-8")


def test_utf16_file_is_named() -> None:
    data = "address,amount,reference\n".encode("utf-16")
    assert only_problem(data) == (0, "the file is UTF-16; export it as CSV (UTF-8)")


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ("a,b", "expected 3 columns (address,amount,reference), found 2"),
        ("a,b,c,d", "expected 3 columns (address,amount,reference), found 4"),
        (
            "a;1;ref",
            "expected 3 columns (address,amount,reference), found 1; fields must be "
            "separated by commas",
        ),
    ],
)
def test_column_count(row: str, expected: str) -> None:
    assert only_problem(csv_bytes(row)) == (1, expected)


def test_csv_syntax_error_names_the_record_line() -> None:
    data = csv_bytes(f"{addr()},1,a", f'{addr("p2sh")},1,"unterminated', "more")
    assert problems_of(data) == [(2, "CSV syntax error: unexpected end of data")]


def test_text_after_a_closing_quote_is_a_syntax_error() -> None:
    assert only_problem(csv_bytes(f'{addr()},1,"a"b')) == (
        1,
        "CSV syntax error: ',' expected after '\"'",
    )


def test_all_problems_are_reported_at_once_and_nothing_is_returned() -> None:
    data = csv_bytes(
        "address,amount,reference",
        f"{addr()},1,ok-1",
        f"{addr('p2sh')},-2,ok-2",
        f"{addr('p2tr', Network.TESTNET)},1.5,ok-3",
        f"{addr('p2pkh')},0.1, ok-4",
        f"{addr('p2wsh')},0.1,ok-1",
        "one,two",
    )
    found = problems_of(data)
    assert [line for line, _ in found] == [3, 4, 5, 6, 7]


# -- error formatting ---------------------------------------------------------------------


def test_problem_and_error_text() -> None:
    assert str(CsvProblem(7, "amount '-1' is negative")) == "line 7: amount '-1' is negative"
    assert str(CsvProblem(0, "the file has no payouts")) == "the file has no payouts"
    error = PayoutsError([CsvProblem(3, "b"), CsvProblem(0, "a")])
    assert str(error) == "payout file refused: 2 problems\n  a\n  line 3: b"
    assert isinstance(error, ValueError)


def test_error_text_lists_50_problems_then_counts_the_rest() -> None:
    rows = [f"{addr(salt=i)},-1,r{i}" for i in range(1, 61)]
    with pytest.raises(PayoutsError) as info:
        parse_payouts(csv_bytes(*rows), MAIN)
    assert len(info.value.problems) == 60
    text = str(info.value).splitlines()
    assert text[0] == "payout file refused: 60 problems"
    assert text[50] == "  line 50: amount '-1' is negative"
    assert text[51:] == ["  ... and 10 more"]


# -- robustness ---------------------------------------------------------------------------


def _parse_or_refuse(data: bytes, network: Network) -> None:
    try:
        result = parse_payouts(data, network)
    except PayoutsError as exc:
        assert exc.problems
        assert all(isinstance(p, CsvProblem) for p in exc.problems)
        return
    assert result and all(p.amount > 0 for p in result)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=600), st.sampled_from(list(Network)))
def test_arbitrary_bytes_only_raise_payouts_error(data: bytes, network: Network) -> None:
    _parse_or_refuse(data, network)


_FRAGMENTS = st.sampled_from(
    [
        addr(),
        addr("p2tr"),
        addr("p2pkh", Network.TESTNET),
        addr("p2sh"),
        "address",
        "amount",
        "reference",
        ",",
        ",",
        ",",
        '"',
        '""',
        "\n",
        "\r\n",
        "\r",
        "0",
        "1",
        ".",
        "5",
        "-",
        "e",
        "nan",
        " ",
        "\t",
        ";",
        "\x00",
        "\ufeff",
        "é",
        "\u202e",
        "21000000",
        "00000001",
        "9" * 30,
    ]
)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_FRAGMENTS, max_size=60), st.sampled_from(list(Network)))
def test_csv_shaped_text_only_raises_payouts_error(parts: list[str], network: Network) -> None:
    data = "".join(parts).encode("utf-8", errors="surrogatepass")
    _parse_or_refuse(data, network)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(list(SCRIPTS)), st.integers(546, 10**12)),
        min_size=1,
        max_size=8,
        unique_by=lambda t: t[0],
    )
)
def test_valid_rows_round_trip(rows: list[tuple[str, int]]) -> None:
    lines = [
        f"{addr(kind)},{sats // 10**8}.{sats % 10**8:08d},ref {n}"
        for n, (kind, sats) in enumerate(rows)
    ]
    result = parse_payouts(csv_bytes("address,amount,reference", *lines), MAIN)
    assert [(p.line, p.script_pubkey, p.amount) for p in result] == [
        (n + 2, SCRIPTS[kind], sats) for n, (kind, sats) in enumerate(rows)
    ]
