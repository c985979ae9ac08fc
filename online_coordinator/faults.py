"""Named points between the coordinator's effects, where the fault tests strike.

The coordinator's promise is that a crash or a full disk at any moment of ``batch import``,
``batch broadcast`` or ``sync`` loses no broadcast record, raises no false alert and never
pays twice, and that running the command again converges. The tests prove it by stopping
the program exactly between two effects, so those moments have names here:

* a test in the same process installs a hook with :func:`hooked` (it may fill the disk,
  stop the node or raise);
* a test running the real command line sets ``COLDSTATION_TEST_CRASH_AT=<point>`` (or
  ``<point>:<n>``, the n-th time it is reached) and the process kills itself with SIGKILL
  there (no clean-up runs, as in a power cut).

The variable names a point and nothing else; it carries no secret. Unset (production), a
point costs one dictionary lookup and one environment lookup.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager

CRASH_VARIABLE = "COLDSTATION_TEST_CRASH_AT"

#: Every point, in the order a command reaches them.
POINTS = (
    "store.commit",  # inside every write transaction, just before COMMIT
    "create.recorded",  # batch create: batch, request and coin locks committed, no files yet
    "import.verified",  # batch import: response checked, nothing recorded yet
    "import.recorded",  # batch import: response, receipts and state committed
    "broadcast.intent",  # batch broadcast: exact bytes recorded as 'sending'
    "broadcast.attempt",  # batch broadcast: attempt counted, sendrawtransaction not yet called
    "broadcast.sent",  # batch broadcast: the node accepted it, not yet recorded
    "broadcast.recorded",  # batch broadcast: recorded as in the mempool
    "sync.block",  # sync: a group of blocks walked and committed (with their coins)
    "sync.coins",  # sync: the scripts that needed a UTXO scan scanned
    "sync.resend",  # sync: re-send attempt counted, sendrawtransaction not yet called
    "sync.resent",  # sync: the node accepted a re-send, not yet recorded
    "sync.settled",  # sync: broadcasts settled, finality not yet updated
)

_hooks: dict[str, Callable[[], None]] = {}
_reached: dict[str, int] = {}


def point(name: str) -> None:
    """Reached ``name``: crash if the test asked for it, run its hook if one is installed."""
    if name not in POINTS:
        raise ValueError(f"unknown fault point {name!r}")
    crash = os.environ.get(CRASH_VARIABLE)
    if crash is not None:
        _reached[name] = _reached.get(name, 0) + 1
        target, _, nth = crash.partition(":")
        if target == name and _reached[name] == int(nth or 1):
            os.kill(os.getpid(), signal.SIGKILL)
    hook = _hooks.get(name)
    if hook is not None:
        hook()


@contextmanager
def hooked(name: str, hook: Callable[[], None]) -> Iterator[None]:
    """Run ``hook`` each time ``name`` is reached, inside the ``with`` block only."""
    if name not in POINTS:
        raise ValueError(f"unknown fault point {name!r}")
    _hooks[name] = hook
    try:
        yield
    finally:
        _hooks.pop(name, None)
