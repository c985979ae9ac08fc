"""What officers and custodians type (issue 18): new PINs said and confirmed, KEK shares
checked as each is typed, and no secret ever repeated back in a message."""

from __future__ import annotations

import os

import pytest

from appliance import pins as pins_module
from appliance.backup import new_kek_shares, share_problem
from appliance.pins import PinSource, PinSourceError

SHARES = new_kek_shares(2, 3)


def _fd(*lines: str) -> int:
    read, write = os.pipe()
    os.write(write, "".join(f"{line}\n" for line in lines).encode())
    os.close(write)
    return read


def _typed(monkeypatch: pytest.MonkeyPatch, *answers: str) -> list[str]:
    """getpass answering ``answers`` in turn; returns the prompts it was shown."""
    prompts: list[str] = []
    queue = list(answers)

    def fake(prompt: str) -> str:
        prompts.append(prompt)
        return queue.pop(0)

    monkeypatch.setattr(pins_module.getpass, "getpass", fake)
    return prompts


def test_a_sound_share_passes_and_each_fault_is_named_without_its_words():
    share = SHARES[0]
    assert share_problem(share) is None and share_problem(share.upper()) is None
    words = share.split()
    assert share_problem(" ".join(words[:-1])) == "it has 32 words; a KEK share has 20 or 33"
    typo = " ".join([*words[:6], "zzzz", *words[7:]])
    assert share_problem(typo) == "word 7 is not a SLIP-39 word (mistyped?)"
    swapped = " ".join([*words[:6], "academic" if words[6] != "academic" else "acid", *words[7:]])
    assert share_problem(swapped) == "its checksum fails: a word is mistyped into another list word"
    for problem in (share_problem(typo), share_problem(swapped)):
        assert not any(word in problem.split() for word in words)


def test_a_bad_share_from_a_descriptor_fails_naming_the_share_not_its_words():
    bad = " ".join([*SHARES[1].split()[:5], "zzzz", *SHARES[1].split()[6:]])
    source = PinSource(_fd(SHARES[0], bad))
    assert source.checked("KEK share 1 of 2", share_problem) == SHARES[0]
    with pytest.raises(PinSourceError) as caught:
        source.checked("KEK share 2 of 2", share_problem)
    assert str(caught.value) == "KEK share 2 of 2: word 6 is not a SLIP-39 word (mistyped?)"


def test_at_a_prompt_a_mistyped_share_is_asked_again(monkeypatch, capsys):
    bad = " ".join(SHARES[2].split()[:-1])
    prompts = _typed(monkeypatch, bad, SHARES[2])
    assert PinSource().checked("KEK share 3 of 3", share_problem) == SHARES[2]
    assert len(prompts) == 2
    err = capsys.readouterr().err
    assert "KEK share 3 of 3: it has 32 words" in err and SHARES[2].split()[0] not in err


def test_a_new_pin_is_said_first_confirmed_and_held_to_the_rule(monkeypatch, capsys):
    prompts = _typed(monkeypatch, "12", "1234", "1243", "5678", "5678")
    assert PinSource().new_pin("officer-1's new token", 4, 255) == "5678"
    err = capsys.readouterr().err
    assert err.startswith("Choose the PIN for officer-1's new token: 4 to 255 characters")
    assert "refused: the PIN must be 4 to 255 characters" in err
    assert "the two PINs differ" in err
    assert len(prompts) == 5 and "5678" not in err


def test_new_pins_give_up_after_three_tries_and_descriptors_are_checked(monkeypatch):
    _typed(monkeypatch, "1", "2", "3")
    with pytest.raises(PinSourceError, match=r"no PIN chosen .* after 3 tries"):
        PinSource().new_pin("admin-1's new token", 4, 255)
    with pytest.raises(PinSourceError, match="must be 4 to 255 characters"):
        PinSource(_fd("abc")).new_pin("admin-1's new token", 4, 255)
    assert PinSource(_fd("abcd")).new_pin("admin-1's new token", 4, 255) == "abcd"
