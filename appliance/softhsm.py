"""SoftHSM2 as the embedded default token: its store lives under the appliance state directory.

In demo and test mode the appliance provisions its own tokens (the signing token, one per
officer and administrator) through the PKCS#11 API (:meth:`appliance.hsm.Hsm.init_token`),
so no PIN ever appears on a command line. This module only points SoftHSM2 at its store;
it must run before the PKCS#11 module is loaded, because SoftHSM2 reads ``SOFTHSM2_CONF``
when it initialises.
"""

from __future__ import annotations

import atexit
import os
import tempfile
from pathlib import Path


def configure(state_dir: Path, *, read_only: bool = False) -> Path:
    """Write a SoftHSM2 config whose token store is ``state_dir/softhsm/tokens``; export it.

    ``read_only`` (a station opened beside the one that holds it, or from a medium
    mounted elsewhere): nothing on the medium is written or re-permissioned. When the
    medium's config names another path, the same settings go to a private temporary file
    for this process instead (removed at exit)."""
    root = state_dir / "softhsm"
    tokens = root / "tokens"
    conf = root / "softhsm2.conf"
    text = (
        f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n"
        "slots.removable = false\n"
    )
    same = conf.is_file() and conf.read_text() == text  # then opening writes nothing
    if read_only:
        conf = conf if same else _private_conf(text)
    else:
        tokens.mkdir(parents=True, exist_ok=True)
        os.chmod(root, 0o700)
        if not same:
            conf.write_text(text)
    os.environ["SOFTHSM2_CONF"] = str(conf)
    return conf


def _private_conf(text: str) -> Path:
    """``text`` in a file only this user reads, removed when the process exits."""
    descriptor, name = tempfile.mkstemp(prefix="coldstation-softhsm2-", suffix=".conf")
    with os.fdopen(descriptor, "w") as file:
        file.write(text)
    atexit.register(Path(name).unlink, missing_ok=True)
    return Path(name)
