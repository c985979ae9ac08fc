"""The digests of a large request are computed a bounded distance ahead of the token's
signing, in a second thread: they must come back in input order, and an input whose
digest cannot be computed must stop the signing there, with nothing after it signed."""

from __future__ import annotations

import threading

import pytest

from appliance.signing import _PIPELINE_FROM, _computed_ahead


@pytest.mark.parametrize("count", [0, 1, _PIPELINE_FROM - 1, _PIPELINE_FROM, 1_000])
def test_digests_come_back_in_input_order(count):
    indexes = list(range(count))[::-1]
    assert list(_computed_ahead(lambda i: i.to_bytes(32, "big"), indexes)) == [
        i.to_bytes(32, "big") for i in indexes
    ]


def test_a_long_request_is_computed_in_another_thread():
    threads = set()

    def compute(index: int) -> bytes:
        threads.add(threading.get_ident())
        return bytes(32)

    list(_computed_ahead(compute, list(range(_PIPELINE_FROM * 4))))
    assert threads and threading.get_ident() not in threads


def test_a_failing_input_stops_the_signing_at_that_input():
    def compute(index: int) -> bytes:
        if index == 700:
            raise ValueError("input 700: witnessScript does not match")
        return bytes(32)

    signed = []
    with pytest.raises(ValueError, match="input 700"):
        for digest in _computed_ahead(compute, list(range(1_000))):
            signed.append(digest)
    assert len(signed) == 700


def test_the_computation_stays_a_bounded_distance_ahead():
    computed = []
    gate = threading.Event()

    def compute(index: int) -> bytes:
        computed.append(index)
        return bytes(32)

    digests = _computed_ahead(compute, list(range(10_000)))
    next(digests)
    gate.wait(0.2)  # let the worker run as far as it is allowed
    assert len(computed) <= _PIPELINE_FROM + 2
    digests.close()
