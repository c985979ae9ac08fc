"""Fixtures for appliance tests on real SoftHSM2 tokens.

SoftHSM2 reads ``SOFTHSM2_CONF`` on every ``C_Initialize``, and ``pkcs11.lib()`` of one path
returns the same loaded library for the whole process. So each test module gets a token
store of its own (:func:`hsm`, module-scoped): it writes a config under a temporary state
directory, then ``Hsm.rescan()`` re-initialises the library onto it; at the end the previous
config is put back. Use this one ``hsm`` for everything in a module: it owns the lock.

Tokens: :func:`make_tokens` creates fresh tokens with unique labels and random PINs.
``Hsm.rescan()`` (needed to see a new token) logs out every token, so create all the tokens a
test needs in one ``make_tokens(...)`` call before unlocking any of them.
"""

from __future__ import annotations

import itertools
import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from appliance import softhsm
from appliance.hsm import Hsm, module_path
from appliance.keystore import Keystore

_COUNTER = itertools.count(1)


@dataclass(frozen=True)
class TokenSpec:
    """A test token: its label and PINs (test-only values, never printed by the tests)."""

    label: str
    so_pin: str
    user_pin: str


def new_token_spec(name: str = "token") -> TokenSpec:
    """Unique label (SoftHSM2 labels are at most 32 characters) and random PINs."""
    label = f"{name[:14]}-{next(_COUNTER)}-{secrets.token_hex(4)}"
    return TokenSpec(label, f"so-{secrets.token_hex(8)}", f"user-{secrets.token_hex(8)}")


def softhsm_available() -> bool:
    return Path(module_path()).exists()


@pytest.fixture(scope="module")
def softhsm_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """This module's SoftHSM2 state directory, with SOFTHSM2_CONF pointing at it."""
    if not softhsm_available():
        pytest.skip("SoftHSM2 (libsofthsm2.so) is not installed")
    previous = os.environ.get("SOFTHSM2_CONF")
    state = tmp_path_factory.mktemp("softhsm-state")
    softhsm.configure(state)
    yield state
    if previous is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = previous


@pytest.fixture(scope="module")
def hsm(softhsm_state: Path) -> Iterator[Hsm]:
    """The module's Hsm, re-initialised onto its own token store."""
    module = Hsm()
    module.rescan()  # the library may already be loaded with another module's store
    yield module
    module.logout_all()


@pytest.fixture
def make_tokens(hsm: Hsm) -> Iterator[Callable[..., list[TokenSpec]]]:
    """Factory: ``make_tokens("a", "b")`` creates one token per name, then rescans once."""

    def make(*names: str) -> list[TokenSpec]:
        specs = [new_token_spec(name) for name in names or ("token",)]
        for spec in specs:
            hsm.init_token(spec.label, spec.so_pin, spec.user_pin)
        hsm.rescan()
        return specs

    yield make
    hsm.logout_all()  # no test leaves a login behind for the next one


@pytest.fixture
def signing_token(make_tokens: Callable[..., list[TokenSpec]]) -> TokenSpec:
    """One fresh token to act as the appliance's signing token."""
    return make_tokens("sign")[0]


@pytest.fixture
def keystore(hsm: Hsm, signing_token: TokenSpec, tmp_path: Path) -> Keystore:
    """An unlocked, empty keystore on a fresh signing token."""
    store = Keystore(hsm, signing_token.label)
    store.unlock(signing_token.user_pin)
    return store
