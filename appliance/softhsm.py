"""SoftHSM2 as the embedded default token: its store lives under the appliance state directory.

In demo and test mode the appliance provisions its own tokens (the signing token, one per
officer and administrator) through the PKCS#11 API (:meth:`appliance.hsm.Hsm.init_token`),
so no PIN ever appears on a command line. This module only points SoftHSM2 at its store;
it must run before the PKCS#11 module is loaded, because SoftHSM2 reads ``SOFTHSM2_CONF``
when it initialises.
"""

from __future__ import annotations

import os
from pathlib import Path


def configure(state_dir: Path) -> Path:
    """Write a SoftHSM2 config whose token store is ``state_dir/softhsm/tokens``; export it."""
    root = state_dir / "softhsm"
    tokens = root / "tokens"
    tokens.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o700)
    conf = root / "softhsm2.conf"
    text = (
        f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n"
        "slots.removable = false\n"
    )
    if not conf.is_file() or conf.read_text() != text:  # opening an appliance writes nothing
        conf.write_text(text)
    os.environ["SOFTHSM2_CONF"] = str(conf)
    return conf
