"""A private TPM 2.0 for tests: the swtpm emulator, a D-Bus of its own and tpm2-abrmd.

tpm2-pkcs11 (the second real PKCS#11 module the suite runs, for officer tokens) reaches
the TPM through a TCTI. Without the resource manager only one key fits per process, so
the stack is the one a real machine runs: ``swtpm`` on a loopback socket, a session
``dbus-daemon`` at a path in the stack's directory, and ``tpm2-abrmd`` on that bus. The
module reads its configuration from the environment (nothing in it is secret):
``TPM2_PKCS11_TCTI``, ``TPM2_PKCS11_STORE`` (its SQLite key store) and
``DBUS_SESSION_BUS_ADDRESS``. :meth:`TpmStack.apply` sets them before the module is loaded.

The TPM's dictionary-attack protection is left as swtpm sets it (3 failures, then every
token of the TPM refuses logins with CKR_PIN_LOCKED), so the suite sees the token's own
lockout; :meth:`TpmStack.clear_lockout` resets it between tests, as the TPM's owner would
with ``tpm2_dictionarylockout --clear-lockout``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

MODULE = "/usr/lib/x86_64-linux-gnu/pkcs11/libtpm2_pkcs11.so"
TABRMD_TCTI = "/usr/lib/x86_64-linux-gnu/libtss2-tcti-tabrmd.so.0"
_TOOLS = ("swtpm", "dbus-daemon", "tpm2-abrmd", "tpm2_dictionarylockout")
START_TIMEOUT_S = 20.0


class TpmStackError(RuntimeError):
    """The stack did not start; the message carries the failing process's output."""


def tpm_tools_missing() -> str | None:
    """Why the TPM stack cannot run here, or None when it can."""
    missing = [tool for tool in _TOOLS if shutil.which(tool) is None]
    missing += [path for path in (MODULE, TABRMD_TCTI) if not Path(path).exists()]
    if missing:
        return (
            "the TPM stack is not installed (missing: " + ", ".join(missing) + "); `make test` "
            "installs libtpm2-pkcs11-1 swtpm swtpm-tools tpm2-abrmd tpm2-tools "
            "libtss2-tcti-tabrmd0 dbus"
        )
    return None


def _free_port_pair() -> int:
    """A free port P with P + 1 free too: the swtpm TCTI finds the control port at P + 1."""
    for _ in range(100):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        with socket.socket() as second:
            try:
                second.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise TpmStackError("no two adjacent free ports on 127.0.0.1")


class TpmStack:
    """swtpm + D-Bus + tpm2-abrmd in ``root``; a context manager that always stops them."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.module = MODULE
        self._processes: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.bus = self.root / "bus"
        self.store = self.root / "tpm2-pkcs11"
        self.env = {
            "TPM2_PKCS11_TCTI": "tabrmd:bus_type=session",
            "TPM2_PKCS11_STORE": str(self.store),
            "DBUS_SESSION_BUS_ADDRESS": f"unix:path={self.bus}",
            # the TSS's and the module's own logging go to stderr otherwise
            "TSS2_LOG": "all+NONE",
            "TPM2_PKCS11_LOG_LEVEL": "0",
        }

    def __enter__(self) -> TpmStack:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        (self.root / "state").mkdir(parents=True, exist_ok=True)
        self.store.mkdir(exist_ok=True)
        try:
            port = _free_port_pair()
            ctrl = port + 1
            self._spawn(
                "swtpm",
                [
                    *("swtpm", "socket", "--tpm2", "--tpmstate", f"dir={self.root / 'state'}"),
                    *("--server", f"type=tcp,port={port},bindaddr=127.0.0.1"),
                    *("--ctrl", f"type=tcp,port={ctrl},bindaddr=127.0.0.1"),
                    *("--flags", "not-need-init,startup-clear"),
                ],
            )
            self._wait(lambda: _listening(port), "swtpm")
            self._spawn(
                "dbus-daemon",
                ["dbus-daemon", "--session", f"--address=unix:path={self.bus}", "--nofork"],
            )
            self._wait(self.bus.exists, "dbus-daemon")
            self._spawn(
                "tpm2-abrmd",
                [
                    *("tpm2-abrmd", "--session", "--allow-root", "--flush-all"),
                    f"--tcti=swtpm:host=127.0.0.1,port={port}",
                ],
            )
            self._wait(self._abrmd_answers, "tpm2-abrmd")
        except BaseException:
            self.stop()
            raise

    def apply(self) -> None:
        """Point this process's environment at the stack (before tpm2-pkcs11 is loaded)."""
        os.environ.update(self.env)

    def clear_lockout(self) -> None:
        """Reset the TPM's dictionary-attack counter (its lockout auth is empty here)."""
        done = subprocess.run(
            ["tpm2_dictionarylockout", "--clear-lockout"],
            env={**os.environ, **self.env, "TPM2TOOLS_TCTI": self.env["TPM2_PKCS11_TCTI"]},
            capture_output=True,
            timeout=30,
            check=False,
        )
        if done.returncode != 0:
            raise TpmStackError(f"tpm2_dictionarylockout failed: {done.stderr.decode()[-500:]}")

    def stop(self) -> None:
        for _, process in reversed(self._processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for _, process in reversed(self._processes):
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
        self._processes.clear()

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = (self.root / f"{name}.log").open("wb")
        env = {**os.environ, **self.env}
        process = subprocess.Popen(argv, stdout=log, stderr=log, env=env, start_new_session=True)
        self._processes.append((name, process))

    def _wait(self, ready: object, name: str) -> None:
        assert callable(ready)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ready():
            process = dict(self._processes)[name]
            if process.poll() is not None or time.monotonic() > deadline:
                output = (self.root / f"{name}.log").read_text(errors="replace")[-1000:]
                raise TpmStackError(f"{name} did not start: {output.strip() or 'no output'}")
            time.sleep(0.02)

    def _abrmd_answers(self) -> bool:
        done = subprocess.run(
            ["tpm2_getrandom", "--hex", "4"],
            env={**os.environ, **self.env, "TPM2TOOLS_TCTI": self.env["TPM2_PKCS11_TCTI"]},
            capture_output=True,
            timeout=10,
            check=False,
        )
        return done.returncode == 0


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False
