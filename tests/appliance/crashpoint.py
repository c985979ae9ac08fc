"""Run ``coldstation-appliance`` and die (SIGKILL-like, ``os._exit``) right after its N-th
irreversible effect: a journal append, a token object written or destroyed, a key pair
generated, a KEK created or destroyed, a PIN changed, a share written, a file on the state
medium written. Test-only: nothing in the appliance knows about it; the effects are found
by wrapping the functions that cause them.

    python -m tests.appliance.crashpoint N [--fail] -- <coldstation-appliance arguments>

Exit status 137 means it died where asked; anything else is the CLI's own status (the
ceremony had fewer than N effects). Before dying it prints ``CRASH <n> <effect>`` on
stderr, so a test can say where each crash happened. With N = 0 nothing dies and
``EFFECTS <count>`` is printed at exit: how many crash points the ceremony has.

With ``--fail`` the N-th effect raises instead (``OSError`` ENOSPC: the medium full, a token
pulled), so the program's own error handling runs, as it would for a failure it can see.
"""

from __future__ import annotations

import atexit
import functools
import importlib
import os
import sys
from collections.abc import Callable
from typing import Any

#: (module, attribute path) of every function whose call is an irreversible effect.
EFFECTS = [
    ("appliance.journal_store", "JournalStore.append"),
    ("appliance.journal_store", "JournalStore.cut_tail"),
    ("appliance.token_objects", "write_data"),
    ("appliance.keystore", "_generate_pair"),
    ("appliance.keystore", "_generate_seed"),
    ("appliance.backup", "_create_kek_as_so"),
    ("appliance.backup", "destroy_kek"),
    ("appliance.backup", "_unwrap"),
    ("appliance.backup", "_create_public"),
    ("appliance.officers", "UnlockedOfficer.add_share"),
    ("appliance.officers", "UnlockedOfficer.keep_only_shares"),
    ("appliance.officers", "_store_share"),
    ("appliance.officers", "_generate_approval_key"),
    ("appliance.hsm", "Hsm.init_token"),
    ("appliance.hsm", "Hsm.so_set_pins"),
    ("appliance.hsm", "Hsm.set_user_pin"),
    ("appliance.files", "atomic_write"),
]
KILLED = 137


def arm(limit: int, fail: bool = False) -> None:
    """Wrap every effect so the process exits right after the ``limit``-th one returns (or,
    with ``fail``, that effect raises OSError ENOSPC)."""
    count = [0]
    if limit == 0:
        atexit.register(lambda: sys.stderr.write(f"EFFECTS {count[0]}\n"))

    def wrap(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            result = function(*args, **kwargs)
            count[0] += 1
            if count[0] == limit and fail:
                raise OSError(28, f"No space left on device (injected after {name})")
            if count[0] == limit:
                sys.stderr.write(f"CRASH {limit} {name}\n")
                sys.stderr.flush()
                os._exit(KILLED)
            return result

        return wrapper

    for module_name, path in EFFECTS:
        module = importlib.import_module(module_name)
        owner: Any = module
        *parents, attribute = path.split(".")
        for parent in parents:
            owner = getattr(owner, parent)
        original = getattr(owner, attribute)
        setattr(owner, attribute, wrap(f"{module_name}.{path}", original))
        if not parents:  # modules that imported the function by name see the wrapper too
            for loaded in list(sys.modules.values()):
                if loaded is not None and getattr(loaded, attribute, None) is original:
                    setattr(loaded, attribute, getattr(owner, attribute))


def main(argv: list[str]) -> int:
    limit = int(argv[0])
    fail = argv[1] == "--fail"
    argv = argv[1:] if fail else argv
    if argv[1] != "--":
        raise SystemExit("usage: crashpoint N [--fail] -- ARGS")
    import appliance.cli  # every module the CLI imports is loaded before wrapping
    import appliance.signing
    import appliance.station

    del appliance.signing, appliance.station  # loaded, so their names can be wrapped

    arm(limit, fail)
    return appliance.cli.main(argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
