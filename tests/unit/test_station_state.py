"""The station's folded state as a checkpoint stores it: a state folded by an older rule
is never read back (the station verifies from the first record instead)."""

from __future__ import annotations

import cbor2
import pytest

from shared.station import STATE_FORMAT, StationError, StationState


def test_a_state_of_the_previous_format_is_not_read() -> None:
    """Format 4: a deferred refusal binds no request id. A format-3 state may hold such an
    id (a forged pending refusal), so reading it back would keep a genuine request
    refused as `replayed` after the upgrade."""
    plain = cbor2.loads(StationState().to_bytes())
    assert plain["format"] == STATE_FORMAT >= 4
    assert isinstance(StationState.from_bytes(cbor2.dumps(plain)), StationState)
    plain["format"] = STATE_FORMAT - 1
    with pytest.raises(StationError, match="not a station state of a known format"):
        StationState.from_bytes(cbor2.dumps(plain))
