"""``coldstation-audit``: the auditor's command line.

Replay and receipt verification arrive with the audit work; until then this entry point
says so instead of pretending. PSBTs can already be inspected with
``coldstation-coordinator psbt decode``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="coldstation-audit",
        description="Coldstation audit replay (not yet available).",
    )
    parser.parse_args(argv)
    print("coldstation-audit: replay is not built yet", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
