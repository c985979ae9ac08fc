"""The TUI's view of a review (``appliance.tui.engine.review_view``), built from real reviews
of real PSBTs: what the officers read must be the engine's values, in the units the screen
names, never a default standing in for a field that moved."""

from __future__ import annotations

import dataclasses

import pytest

from appliance.tui.engine import review_view
from appliance.tui.screens.review import request_text, totals_text
from tests.adversarial.psbts import NOW, Scenario, variant


def test_the_view_of_a_real_review_carries_its_values() -> None:
    review = Scenario().build().review()
    view = review_view(review)

    assert review.fee is not None and review.request is not None and review.facts is not None
    assert view.fee_sat == review.fee == 3_000
    assert view.vsize == review.vsize
    assert view.fee_rate_sat_per_vb == pytest.approx(review.fee / review.vsize, abs=0.001)
    assert view.judged_at == review.facts.request_time == NOW  # not 0, not 1970
    assert view.request is not None
    assert (view.request.created, view.request.expiry) == (
        review.request.created,
        review.request.expiry,
    )
    assert view.request.created > 1_000_000_000
    assert view.request.batch_id == review.request.batch_id != ""
    assert view.request.kind == review.request.kind == "payment"
    assert view.request.request_id == review.request.request_id.hex()
    assert review.txid is not None and view.txid == review.txid[::-1].hex()
    assert view.total_in_sat == review.total_in == 1_100_000
    assert view.total_out_sat == review.total_out
    assert view.paid_out_sat == review.paid_to_others == 650_000
    assert view.change_sat == 1_100_000 - 650_000 - 3_000
    assert [o.amount_sat for o in view.outputs] == [o.amount for o in review.outputs]
    assert [o.is_change for o in view.outputs] == [False, False, True]
    assert view.outputs[2].change_path is not None  # where the change was re-derived
    assert all(line.owner.startswith("ours: key ") for line in view.inputs)
    assert view.locks.startswith("version 2")
    assert view.approved_for_signing and view.refusals == ()


def test_the_screen_shows_the_rate_in_sat_per_vbyte_and_the_request_dates() -> None:
    view = review_view(Scenario().build().review())
    totals = totals_text(view).plain
    assert f"{view.fee_rate_sat_per_vb:.1f} sat/vB" in totals
    assert "11.9 sat/vB" in totals  # 3000 sat over 252 vB, not the engine's 11905 sat/kvB
    assert "1970" not in request_text(view, NOW).plain


def test_unknown_amounts_are_said_unknown_not_a_crash() -> None:
    """An input without its previous transaction: no total in, no fee, no rate."""
    view = review_view(variant("missing_non_witness_utxo").review())
    assert view.total_in_sat is None and view.fee_sat is None
    assert view.fee_rate_sat_per_vb is None
    assert "Total in    unknown" in totals_text(view).plain
    unknown_totals = dataclasses.replace(view, total_out_sat=None, paid_out_sat=None)
    text = totals_text(unknown_totals).plain
    assert "Paid out    unknown" in text and "Change      unknown" in text
