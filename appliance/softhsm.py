"""SoftHSM2 as the embedded default token: its store lives under the appliance state directory.

In demo and test mode the appliance provisions its own tokens (the signing token, one per
officer). Production HSMs and smartcards are initialised with their vendors' tools; this
module is only for SoftHSM2. It must run before the PKCS#11 module is loaded, because
SoftHSM2 reads ``SOFTHSM2_CONF`` when it initialises.

Token initialisation uses ``softhsm2-util`` (python-pkcs11 has no C_InitToken). Its PINs
travel on that tool's command line; acceptable for a demo token on an air-gapped machine,
and the reason production tokens are initialised by the vendor's tooling instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from appliance.hsm import HsmError

SOFTHSM_UTIL = "softhsm2-util"


def configure(state_dir: Path) -> Path:
    """Write a SoftHSM2 config whose token store is ``state_dir/softhsm/tokens``; export it."""
    root = state_dir / "softhsm"
    tokens = root / "tokens"
    tokens.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o700)
    conf = root / "softhsm2.conf"
    text = (f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n"
            "slots.removable = false\n")  # fmt: skip
    if not conf.is_file() or conf.read_text() != text:  # opening an appliance writes nothing
        conf.write_text(text)
    os.environ["SOFTHSM2_CONF"] = str(conf)
    return conf


def init_token(label: str, so_pin: str, user_pin: str) -> None:
    """Create a SoftHSM2 token in the first free slot (call ``Hsm.rescan()`` afterwards)."""
    if shutil.which(SOFTHSM_UTIL) is None:
        raise HsmError(f"{SOFTHSM_UTIL} not found: install the softhsm2 package")
    done = subprocess.run(
        [SOFTHSM_UTIL, "--init-token", "--free", "--label", label,
         "--so-pin", so_pin, "--pin", user_pin],
        capture_output=True, text=True, check=False, env=os.environ.copy(),
    )  # fmt: skip
    if done.returncode != 0:
        raise HsmError(f"cannot create token {label!r}: {done.stderr.strip() or done.stdout}")
