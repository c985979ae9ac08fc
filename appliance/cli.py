"""``coldstation-appliance``: the cold-station program.

The Textual signing application and the headless ceremonies arrive with the custody-core
and signing-ceremony work; until then this entry point says so instead of pretending.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="coldstation-appliance",
        description="Coldstation air-gapped signing appliance (not yet available).",
    )
    parser.parse_args(argv)
    print("coldstation-appliance: the signing appliance is not built yet", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
