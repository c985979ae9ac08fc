"""Helpers for tests/appliance/test_medium_attacks.py: drive the real CLI, read and damage the
state medium the way an insider would, and talk to the demo tokens with plain python-pkcs11.

Nothing here goes through the appliance's own state code to *judge* anything: the journal
is parsed frame by frame from ``journal.log`` (as anyone holding the medium can), requests
are real PSBTs, and token access is raw PKCS#11 (a colluding quorum or an insider with the
SoftHSM2 files needs nothing more).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import cbor2
import pkcs11
from pkcs11 import Attribute, Mechanism, ObjectClass

from appliance import softhsm
from appliance.hsm import module_path
from appliance.keystore import compress_ec_point
from shared.bitcoin import ecdsa
from shared.bitcoin.address import Network, address_to_script
from shared.bitcoin.descriptor import Descriptor
from shared.bitcoin.script import p2wpkh_script
from shared.bitcoin.tx import SEQUENCE_RBF, OutPoint, Transaction, TxIn, TxOut
from shared.journal import Entry
from shared.policy import fingerprint_of
from shared.psbt import Psbt
from shared.request import RequestMetadata, attach_request

EXE = str(Path(sys.executable).with_name("coldstation-appliance"))
OFFICERS = ("officer-1", "officer-2", "officer-3")
ADMINS = ("admin-1", "admin-2")
#: Distinctive PINs (searched for in /proc by the cmdline test); fresh for every run.
PINS = {label: f"{label[0]}{label[-1]}x{secrets.token_hex(6)}" for label in OFFICERS + ADMINS}
TWO = ("officer-1", "officer-2")
PAYEE = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"  # in the address book (policy v2)
STRANGER = "bcrt1qft5p2uhsdcdc3l2ua4ap5qqfg4pjaqlp250x7us7a8qqhrxrxfsqseac85"  # P2WSH(OP_TRUE)
SIGNING = "coldstation-signing"
KEK_LABEL = "coldstation-kek"


# -- the CLI --------------------------------------------------------------------------------


def run(
    state: Path,
    *args: str,
    pins: tuple[str, ...] | list[str] = (),
    env: dict[str, str] | None = None,
    timeout: float = 120,
    program: list[str] | None = None,
) -> subprocess.CompletedProcess:
    """``coldstation-appliance --state STATE --pin-fd N ARGS``, PINs through a pipe
    (``program`` replaces the executable, e.g. a wrapper that crashes on purpose)."""
    read, write = os.pipe()
    os.write(write, "".join(f"{p}\n" for p in pins).encode())
    os.close(write)
    try:
        return subprocess.run(
            [*(program or [EXE]), "--state", str(state), "--pin-fd", str(read), *args],
            pass_fds=(read,),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=env,
        )
    finally:
        os.close(read)


#: The real CLI, except that removing a file from ``pending/`` kills the process on the
#: spot (os._exit): a crash right after a pending record was journaled, before its file
#: was deleted.
CRASH_AFTER_PENDING_RECORD = [
    sys.executable,
    "-c",
    """
import os, pathlib, sys
_unlink = pathlib.Path.unlink
def unlink(self, *args, **kwargs):
    if self.parent.name == "pending":
        os._exit(137)
    return _unlink(self, *args, **kwargs)
pathlib.Path.unlink = unlink
from appliance.cli import main
sys.exit(main(sys.argv[1:]))
""",
]


def run_watching_proc(
    state: Path, *args: str, pins: list[str], secrets_: list[str]
) -> tuple[subprocess.CompletedProcess, dict]:
    """Run the CLI while polling every process's cmdline (and the environment of anything
    coldstation or softhsm) for any of ``secrets_``; returns what the polling saw."""
    needles = [s.encode() for s in secrets_]
    read, write = os.pipe()
    os.write(write, "".join(f"{p}\n" for p in pins).encode())
    os.close(write)
    seen = {"leaks": [], "samples": 0, "saw_cli": 0, "programs": set()}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [EXE, "--state", str(state), "--pin-fd", str(read), *args],
            pass_fds=(read,),
            stdout=out,
            stderr=err,
        )
        os.close(read)
        while True:
            finished = proc.poll() is not None
            _scan_proc(needles, seen, proc.pid)
            if finished:
                break
        out.seek(0)
        err.seek(0)
        done = subprocess.CompletedProcess(
            proc.args, proc.returncode, out.read().decode(), err.read().decode()
        )
    return done, seen


def _scan_proc(needles: list[bytes], seen: dict, cli_pid: int) -> None:
    seen["samples"] += 1
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as handle:
                cmdline = handle.read()
        except OSError:
            continue
        if int(name) == cli_pid and cmdline:
            seen["saw_cli"] += 1
        program = os.path.basename(cmdline.split(b"\0", 1)[0]).decode(errors="replace")
        seen["programs"].add(program)
        places = [("cmdline", cmdline)]
        if b"coldstation" in cmdline or b"softhsm" in cmdline:
            try:
                with open(f"/proc/{name}/environ", "rb") as handle:
                    places.append(("environ", handle.read()))
            except OSError:
                pass
        for where, text in places:
            for needle in needles:
                if needle in text:
                    seen["leaks"].append((int(name), where, program))


def pins_of(*labels: str) -> list[str]:
    return [PINS[label] for label in labels]


def officers_args(*labels: str) -> list[str]:
    return ["--officers", ",".join(labels)]


def ok(done: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def said(done: subprocess.CompletedProcess) -> str:
    return done.stdout + done.stderr


def clone(src: Path, dst: Path) -> Path:
    """An independent station: in demo mode its SoftHSM2 tokens live inside the directory."""
    shutil.copytree(src, dst, symlinks=True)
    return dst


# -- the journal, as bytes on the medium ----------------------------------------------------

HEADER, TRAILER = 8, 4


def frames(data: bytes) -> list[tuple[int, int]]:
    """(offset, payload length) of each complete frame."""
    found, offset = [], 0
    while offset + HEADER <= len(data):
        (length,) = struct.unpack_from(">I", data, offset + 4)
        if offset + HEADER + length + TRAILER > len(data):
            break
        found.append((offset, length))
        offset += HEADER + length + TRAILER
    return found


def entries(state: Path) -> list[Entry]:
    """Every record up to the first frame that does not parse (damage stops the reading)."""
    data = (state / "journal.log").read_bytes()
    found = []
    for offset, length in frames(data):
        try:
            found.append(Entry.from_bytes(data[offset + HEADER : offset + HEADER + length]))
        except ValueError:
            break
    return found


def events(state: Path) -> list[str]:
    return [e.record.event for e in entries(state)]


def decisions(state: Path) -> list[Entry]:
    return [e for e in entries(state) if e.record.event == "signing_decision"]


def drop_last_frame(state: Path) -> int:
    """Boundary truncation: the file ends cleanly after the frame before the last."""
    path = state / "journal.log"
    data = path.read_bytes()
    offset, _ = frames(data)[-1]
    path.write_bytes(data[:offset])
    return len(frames(data)) - 1  # the seq that is gone


def flip_bit(state: Path, index: int, where: int = 0) -> None:
    """One bit of frame ``index``'s payload (byte ``where`` after its start), CRC untouched."""
    path = state / "journal.log"
    data = bytearray(path.read_bytes())
    offset, length = frames(bytes(data))[index]
    data[offset + HEADER + min(where, length - 1)] ^= 0x01
    path.write_bytes(bytes(data))


def edit_record(state: Path, index: int, old: bytes, new: bytes) -> None:
    """Replace bytes inside one record's payload and fix up the frame's CRC."""
    assert len(old) == len(new)
    path = state / "journal.log"
    data = bytearray(path.read_bytes())
    offset, length = frames(bytes(data))[index]
    payload = bytes(data[offset + HEADER : offset + HEADER + length])
    assert payload.count(old) >= 1, (old, payload)
    payload = payload.replace(old, new, 1)
    data[offset + HEADER : offset + HEADER + length] = payload
    crc = zlib.crc32(payload, zlib.crc32(bytes(data[offset + 4 : offset + 8])))
    data[offset + HEADER + length : offset + HEADER + length + TRAILER] = struct.pack(">I", crc)
    path.write_bytes(bytes(data))


def checkpoint_seq(state: Path) -> int | None:
    """The seq the checkpoint claims (read without checking it, as an attacker would)."""
    try:
        return int(cbor2.loads((state / "checkpoint.cbor").read_bytes())["checkpoint"]["seq"])
    except (FileNotFoundError, KeyError, ValueError):
        return None


# -- requests -------------------------------------------------------------------------------


def payee_script(address: str = PAYEE) -> bytes:
    return address_to_script(address, Network.REGTEST)


def build_request(
    pubkey: bytes,
    *,
    pay: int = 40_000,
    to: bytes | None = None,
    coin: int = 1_000_000,
    fee: int = 2_000,
    version: int = 2,
    locktime: int = 0,
    sequence: int = SEQUENCE_RBF,
    created_delta: int = -10,
    expiry_delta: int = 1800,
    tip_height: int | None = None,
    request_id: bytes | None = None,
) -> bytes:
    """A signing request spending one coin of ``wpkh(pubkey)`` (change back to it)."""
    ours = p2wpkh_script(pubkey)
    funding = Transaction(
        inputs=[TxIn(OutPoint(os.urandom(32), 0), b"\x51")], outputs=[TxOut(coin, ours)]
    )
    spend = Transaction(
        version=version,
        inputs=[TxIn(OutPoint(funding.txid, 0), sequence=sequence)],
        outputs=[
            TxOut(pay, to if to is not None else payee_script()),
            TxOut(coin - pay - fee, ours),
        ],
        locktime=locktime,
    )
    psbt = Psbt.from_unsigned_tx(spend)
    psbt.inputs[0].set(0x00, funding.serialize())
    psbt.inputs[0].set(0x01, funding.outputs[0].serialize())
    now = int(time.time())
    meta = RequestMetadata(
        request_id=request_id or os.urandom(16),
        batch_id="batch-m",
        requester="ops-mallory",
        created=now + created_delta,
        expiry=max(now, now + created_delta) + expiry_delta,
        purpose="payouts",
        network="regtest",
        tip_height=tip_height,
    )
    return attach_request(psbt, meta).serialize()


def sign(
    state: Path, tmp: Path, data: bytes, name: str, *labels: str, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess, Path]:
    labels = labels or TWO
    source, out = tmp / f"{name}.psbt", tmp / f"{name}.signed"
    source.write_bytes(data)
    done = run(
        state,
        "sign",
        "--in",
        str(source),
        *officers_args(*labels),
        "--out",
        str(out),
        pins=pins_of(*labels),
        env=env,
    )
    return done, out


def wsh_multi(threshold: int, *keys: bytes) -> Descriptor:
    body = f"wsh(sortedmulti({threshold},{','.join(k.hex() for k in keys)}))"
    return Descriptor.parse(body, require_checksum=False)


def foreign_key(name: str = "mallory") -> bytes:
    from coincurve import PrivateKey

    return PrivateKey(hashlib.sha256(name.encode()).digest()).public_key.format(compressed=True)


# -- tokens through plain python-pkcs11 -------------------------------------------------------


@contextlib.contextmanager
def token_library(state: Path) -> Iterator[pkcs11.lib]:
    """The PKCS#11 module in this process, pointed at the station's SoftHSM2 store.

    SoftHSM2 reads its config at C_Initialize, so the library is re-initialised onto the
    station (and again afterwards, with the previous config back, for whoever is next).
    """
    previous = os.environ.get("SOFTHSM2_CONF")
    softhsm.configure(state)
    lib = pkcs11.lib(module_path())
    lib.reinitialize()
    try:
        yield lib
    finally:
        if previous is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = previous
        lib.reinitialize()


def read_share_objects(lib: pkcs11.lib, label: str, pin: str) -> list[str]:
    """What a colluding officer reads off their own token: the PIN share(s)."""
    with lib.get_token(token_label=label).open(user_pin=pin) as session:
        found = session.get_objects(
            {Attribute.CLASS: ObjectClass.DATA, Attribute.LABEL: "coldstation-pin-share"}
        )
        return [bytes(o[Attribute.VALUE]).decode() for o in found]


def approval_sign(lib: pkcs11.lib, label: str, pin: str, digest: bytes) -> tuple[str, bytes]:
    """(fingerprint, DER signature) by the approval key of an officer/administrator token."""
    with lib.get_token(token_label=label).open(user_pin=pin) as session:
        public = next(
            session.get_objects(
                {Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.LABEL: "coldstation-approval"}
            )
        )
        private = next(
            session.get_objects(
                {Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.LABEL: "coldstation-approval"}
            )
        )
        pubkey = compress_ec_point(public[Attribute.EC_POINT])
        der = ecdsa.der_from_raw(private.sign(digest, mechanism=Mechanism.ECDSA))
    assert ecdsa.verify(pubkey, der, digest)
    return fingerprint_of(pubkey), der


def secret_keys(lib: pkcs11.lib, label: str = SIGNING, pin: str | None = None) -> list[str]:
    """Labels of every secret-key object a session (public, or logged in) can see."""
    with lib.get_token(token_label=label).open(user_pin=pin) as session:
        return [
            str(o[Attribute.LABEL])
            for o in session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY})
        ]


def login_fails(
    lib: pkcs11.lib, label: str, *, user_pin: str | None = None, so_pin: str | None = None
) -> bool:
    """True when the token refuses the PIN (C_Login fails)."""
    try:
        with lib.get_token(token_label=label).open(rw=True, user_pin=user_pin, so_pin=so_pin):
            return False
    except (pkcs11.exceptions.PinIncorrect, pkcs11.exceptions.PinLenRange):
        return True


def token_dir(state: Path, label: str) -> Path:
    """The SoftHSM2 directory of the token labelled ``label`` (its label is in token.object)."""
    padded = label.encode().ljust(32, b" ")
    for directory in (state / "softhsm" / "tokens").iterdir():
        if padded in (directory / "token.object").read_bytes():
            return directory
    raise LookupError(label)


def replay_findings(state: Path, tmp: Path, pins: list[str]) -> list[str]:
    """Export the journal (officer-1 and officer-2 activate, with ``pins``) and replay it
    with the auditors' code; its findings as ``check: message``."""
    from shared.audit.change import ChangeDeriver
    from shared.audit.evidence import parse_bundle
    from shared.audit.journal_replay import ApplianceReplay

    bundle = tmp / "bundle"
    out = tmp / "j.cbor"
    done = run(
        state,
        "journal",
        "export",
        "--out",
        str(out),
        "--evidence",
        str(bundle),
        *officers_args(*TWO),
        pins=pins,
    )
    assert done.returncode == 0, done.stderr
    policies = {p.name: p.read_bytes() for p in (bundle / "policies").glob("*.cbor")}
    transcripts = {p.stem: p.read_bytes() for p in (bundle / "transcripts").glob("*.cbor")}
    parsed = parse_bundle(
        str(bundle), (bundle / "journal.cbor").read_bytes(), policies, transcripts
    )
    result = ApplianceReplay(parsed, parsed.audit_key, {}, ChangeDeriver(0)).run()
    return [f"{f.check}: {f.message}" for f in result.findings]
