"""The appliance program's front: ``--state`` on either side of the ceremony, every failure
mapped to its exit status and line in one place, and policy drafting as a rule of its own
(``appliance.policy_draft``), not a command handler's."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from appliance.cli import DEFAULT_STATE, build_parser, main
from appliance.exit_codes import ExitCode, failure
from appliance.policy_draft import PolicyChanges, draft_next
from appliance.station import CeremonyError
from shared.bitcoin.address import Network, script_to_address
from shared.bitcoin.descriptor import DescriptorError
from shared.policy import Policy, PolicyError
from shared.policy_text import policy_diff, policy_lines
from shared.requester import enrolment_json
from tests.passkeys import SoftPasskey
from tests.unit.test_policy import APPROVERS, STRANGER_SCRIPT, fp, make_policy

NEW_PAYEE = script_to_address(STRANGER_SCRIPT, Network.REGTEST)

# -- --state ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["--state", "here", "status"],
        ["status", "--state", "here"],
        ["--state", "elsewhere", "status", "--state", "here"],  # the last one wins
        ["policy", "show", "--state", "here"],
        ["journal", "verify", "--state", "here"],
        ["keygen", "k", "--officers", "a,b", "--state", "here"],
    ],
)
def test_state_goes_before_or_after_the_ceremony(argv: list[str]) -> None:
    assert build_parser().parse_args(argv).state == Path("here")


def test_state_has_its_default_when_not_given() -> None:
    assert build_parser().parse_args(["status"]).state == DEFAULT_STATE
    assert build_parser().parse_args([]).state == DEFAULT_STATE


@pytest.mark.parametrize("after", [False, True], ids=["before", "after"])
def test_the_state_directory_given_is_the_one_opened(
    tmp_path: Path, capsys: pytest.CaptureFixture, after: bool
) -> None:
    missing = tmp_path / "no-station"
    argv = ["status", "--state", str(missing)] if after else ["--state", str(missing), "status"]
    assert main(argv) == ExitCode.REFUSED
    assert (
        capsys.readouterr().err == f"refused: {missing} holds no appliance: run "
        "`coldstation-appliance init`\n"
    )


# -- exit statuses -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "code", "line"),
    [
        (CeremonyError("no quorum"), ExitCode.REFUSED, "refused: no quorum"),
        (PolicyError("bad draft"), ExitCode.REFUSED, "refused: bad draft"),  # a ValueError too
        (DescriptorError("bad checksum"), ExitCode.REFUSED, "refused: bad checksum"),
        (ValueError("invalid literal"), ExitCode.USAGE, "error: invalid literal"),
        (FileNotFoundError("no such file"), ExitCode.USAGE, "error: no such file"),
    ],
)
def test_failures_map_to_one_status_and_line(exc: Exception, code: ExitCode, line: str) -> None:
    assert failure(exc) == (code, line)


def test_a_bug_keeps_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    assert failure(KeyError("bug")) is None

    def broken(_args: object) -> int:
        raise KeyError("a bug")

    monkeypatch.setattr("appliance.cli.status_command", broken)  # main builds its parser
    with pytest.raises(KeyError, match="a bug"):
        main(["status"])


# -- policy drafting ----------------------------------------------------------------------------


def test_a_draft_is_the_next_version_chained_to_the_current_one() -> None:
    current = make_policy()
    draft = draft_next(
        current,
        PolicyChanges(
            settings=[("per_tx_limit_sat", "5000"), ("allow_timelocks", "True")],
            addresses=[(NEW_PAYEE, "New payee")],
            revoked=[fp(APPROVERS[2])],
        ),
    )
    assert (draft.version, draft.previous_hash) == (current.version + 1, current.hash())
    assert draft.per_tx_limit == 5000 and draft.allow_timelocks is True
    assert draft.address_book[-1] == (NEW_PAYEE, "New payee")
    assert len(draft.address_book) == len(current.address_book) + 1
    revoked = draft.officer(fp(APPROVERS[2]))
    assert revoked is not None and not revoked.active
    assert draft_next(current, PolicyChanges()).version == current.version + 1


def test_a_draft_refuses_what_it_may_not_change() -> None:
    current = make_policy()
    with pytest.raises(CeremonyError, match="network: not a setting a draft may change"):
        draft_next(current, PolicyChanges(settings=[("network", "mainnet")]))
    with pytest.raises(CeremonyError, match="no such officer"):
        draft_next(current, PolicyChanges(revoked=["0" * 16]))
    with pytest.raises(CeremonyError, match=r"max_fee_btc: amount 'lots' is not a BTC amount"):
        draft_next(current, PolicyChanges(settings=[("max_fee_btc", "lots")]))


def test_a_draft_adds_links_and_revokes_requesters_from_enrolment_files() -> None:
    alice, bob = SoftPasskey("alice"), SoftPasskey("bob")
    current = make_policy()
    enrolled = draft_next(
        current,
        PolicyChanges(
            requesters=[enrolment_json(alice.requester()), enrolment_json(bob.requester())],
            requester_officers=[("alice", fp(APPROVERS[0]))],
        ),
    )
    assert [r.name for r in enrolled.requesters] == ["alice", "bob"]
    assert enrolled.requester("alice").officer == fp(APPROVERS[0])
    assert enrolled.requester("alice").public_key == alice.cose_key
    added = "\n".join(policy_diff(current, enrolled))
    assert f"+ requester alice (key {alice.requester().key_fingerprint}, credential " in added
    assert "rp coordinator.custodian.example at https://coordinator.custodian.example" in added
    # a key swapped under the same name and credential id shows as one line out, one in
    swapped = enrolled.to_plain()
    thief = SoftPasskey("alice", credential_id=alice.credential_id)
    swapped["requesters"][0]["public_key"] = thief.cose_key
    swapped["version"] += 1
    swapped["previous_hash"] = enrolled.hash()
    swap = policy_diff(enrolled, Policy.from_plain(swapped))
    assert len(swap) == 2 and swap[0].startswith("+ requester alice (key ")
    assert thief.requester().key_fingerprint in swap[0] and swap[1].startswith("- requester alice")
    revoked = draft_next(enrolled, PolicyChanges(revoked_requesters=["bob"]))
    assert not revoked.requester("bob").active and revoked.requester("alice").active
    assert "requesters: none listed" in "\n".join(policy_lines(current))
    with pytest.raises(CeremonyError, match="--revoke-requester carol: no such requester"):
        draft_next(enrolled, PolicyChanges(revoked_requesters=["carol"]))
    with pytest.raises(CeremonyError, match="--add-requester: not JSON"):
        draft_next(current, PolicyChanges(requesters=["{oops"]))
    with pytest.raises(PolicyError, match="two active requesters share a name"):
        second = SoftPasskey("alice").requester()
        draft_next(enrolled, PolicyChanges(requesters=[enrolment_json(second)]))
    with pytest.raises(PolicyError, match="two requesters share a credential id"):
        draft_next(enrolled, PolicyChanges(requesters=[enrolment_json(alice.requester())]))
    with pytest.raises(PolicyError, match="is not an approver of this policy"):
        draft_next(enrolled, PolicyChanges(requester_officers=[("bob", "0" * 16)]))


@pytest.mark.parametrize(
    ("name", "value", "field", "expected"),
    [
        ("per_tx_limit_btc", "0.5", "per_tx_limit", 50_000_000),
        ("per_day_limit_btc", "2", "per_day_limit", 200_000_000),
        ("max_fee_sat", "25000", "max_fee", 25_000),
        ("fee_rate_ceiling_sat_per_vb", "50", "fee_rate_ceiling", 50_000),
        ("fee_rate_ceiling_sat_per_vb", "2.5", "fee_rate_ceiling", 2_500),
        ("fee_rate_ceiling_sat_per_kvb", "50000", "fee_rate_ceiling", 50_000),
        ("request_ttl_max_s", "3600", "request_ttl_max", 3600),
        ("require_address_book", "TRUE", "require_address_book", True),
    ],
)
def test_settings_name_their_unit_and_are_read_in_it(name, value, field, expected) -> None:
    """Issue 18: fee_rate_ceiling=50 was read as sat/kvB (0.05 sat/vB: every request then
    refused) and per_tx_limit=0.5 failed with `invalid literal for int()`."""
    draft = draft_next(make_policy(), PolicyChanges(settings=[(name, value)]))
    assert getattr(draft, field) == expected


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (
            "fee_rate_ceiling",
            "50",
            "name the unit: fee_rate_ceiling_sat_per_kvb=... or fee_rate_ceiling_sat_per_vb=...",
        ),
        ("per_tx_limit", "0.5", "name the unit: per_tx_limit_btc=... or per_tx_limit_sat=..."),
        ("per_tx_limit_sat", "0.5", "not a whole number of satoshis"),
        ("per_tx_limit_btc", "1e3", "exponent notation"),
        ("per_tx_limit_btc", "0.000000001", "over-precise"),
        ("fee_rate_ceiling_sat_per_vb", "2.0005", "at most 3 decimals"),
        ("fee_rate_ceiling_sat_per_vb", "fast", "not a number of sat/vB"),
        ("allow_timelocks", "yes", "not true or false"),
        ("approval_quorum", "-1", "not a whole number"),
    ],
)
def test_a_malformed_setting_is_refused_in_one_line_naming_it(name, value, message) -> None:
    with pytest.raises(CeremonyError, match=re.escape(message)) as caught:
        draft_next(make_policy(), PolicyChanges(settings=[(name, value)]))
    assert "\n" not in str(caught.value) and name in str(caught.value)
