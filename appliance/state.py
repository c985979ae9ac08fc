"""The appliance's state directory (the "state medium"): what lives where.

    STATE/appliance.json   appliance id, network, token labels (checked against the journal)
    STATE/journal.log      the hash-chained, HSM-signed journal: the station's only truth
    STATE/checkpoint.cbor  the state folded from the journal, signed by the audit key (a cache)
    STATE/policies/        installed signed policies, NNNN.cbor: a cache, each file checked
                           against the hash its policy_installed record names
    STATE/transcripts/     what officers were shown, named by hash (evidence for auditors)
    STATE/pending/         refusals and lockout resets waiting for the next activation
    STATE/signed/          signed PSBTs, kept so a lost output can be shown again
    STATE/softhsm/         SoftHSM2's token store in demo mode

The medium is untrusted (DESIGN 9): nothing here is believed unless the journal vouches for
it. Keys, pinned wallets, the policy in force, officers, PIN counters and the signing
history are not kept in files at all; they come from the journal (shared.station) and the
tokens (appliance.token_objects). The signing token's PIN exists only while M officers are
present.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from dataclasses import asdict, dataclass, field
from pathlib import Path

from appliance.files import atomic_write
from shared import canonical
from shared.policy import SignedPolicy

SIGNING_TOKEN = "coldstation-signing"


class StateError(RuntimeError):
    """A state directory that is missing, incomplete or inconsistent."""


@dataclass
class ApplianceConfig:
    appliance_id: str
    network: str
    signing_token: str = SIGNING_TOKEN
    officer_tokens: dict[str, str] = field(default_factory=dict)  # fingerprint -> label
    admin_tokens: dict[str, str] = field(default_factory=dict)
    demo: bool = False
    #: the signing HSM's PKCS#11 module ("" : $COLDSTATION_PKCS11_MODULE or SoftHSM2); the
    #: journal's token_init record names the one it was initialised with, and wins
    signing_module: str = ""


class ApplianceState:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @property
    def config_path(self) -> Path:
        return self.root / "appliance.json"

    @property
    def journal_path(self) -> Path:
        return self.root / "journal.log"

    @property
    def checkpoint_path(self) -> Path:
        return self.root / "checkpoint.cbor"

    @property
    def policies_dir(self) -> Path:
        return self.root / "policies"

    def policy_path(self, version: int) -> Path:
        return self.policies_dir / f"{version:04d}.cbor"

    def exists(self) -> bool:
        return self.config_path.is_file()

    def create(self, config: ApplianceConfig) -> None:
        if self.exists():
            raise StateError(f"{self.root} already holds an appliance ({config.appliance_id})")
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        self.policies_dir.mkdir(exist_ok=True)
        self.save(config)

    def save(self, config: ApplianceConfig) -> None:
        atomic_write(self.config_path, json.dumps(asdict(config), indent=2).encode())

    def load(self) -> ApplianceConfig:
        if not self.exists():
            raise StateError(f"{self.root} holds no appliance: run `coldstation-appliance init`")
        try:
            return ApplianceConfig(**json.loads(self.config_path.read_text()))
        except (ValueError, TypeError) as exc:
            raise StateError(f"{self.config_path}: unreadable ({exc})") from exc

    # -- display transcripts ---------------------------------------------------------------

    def store_transcript(self, plain: dict) -> bytes:
        """Keep what the officers were shown; returns its hash for the journal record."""
        data = canonical.encode(plain)  # once: a 1,450-input transcript is ~1 MB of CBOR
        digest = hashlib.sha256(data).digest()
        path = self.root / "transcripts" / f"{digest.hex()}.cbor"
        if not path.exists():
            atomic_write(path, data)
        return digest

    # -- evidence waiting for the journal --------------------------------------------------

    @property
    def pending_dir(self) -> Path:
        return self.root / "pending"

    def store_pending(self, evidence: dict) -> Path:
        """Signed evidence (e.g. a lockout reset) to journal at the next activation."""
        data = canonical.encode(evidence)
        # time first (files are flushed in order), then a random tag: two identical
        # refusals in one second are two records, not one overwritten file
        name = f"{int(evidence['time']):012d}-{os.urandom(6).hex()}.cbor"
        path = self.pending_dir / name
        atomic_write(path, data)
        return path

    def pending(self) -> list[Path]:
        """Files waiting for the next activation, oldest first (checked when journaled)."""
        if not self.pending_dir.is_dir():
            return []
        return sorted(self.pending_dir.glob("*.cbor"))

    def read_pending(self, path: Path) -> bytes:
        """A pending file's bytes: a regular file (never a link, a folder or a pipe) of at
        most MAX_PENDING_BYTES, checked before it is read; PendingError otherwise."""
        from appliance.pending import MAX_PENDING_BYTES, PendingError

        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            raise PendingError(f"cannot be opened as a file ({exc.strerror})") from exc
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise PendingError("is not a regular file")
            if info.st_size > MAX_PENDING_BYTES:
                raise PendingError(f"{info.st_size} bytes, more than a pending record can be")
            return os.read(fd, MAX_PENDING_BYTES + 1)
        finally:
            os.close(fd)

    def reject_pending(self, path: Path) -> Path:
        """Move a pending file that does not verify aside, so it is kept but never used
        (into ``pending/rejected``, refused if that is anything but a real folder)."""
        folder = self.pending_dir / "rejected"
        if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
            raise StateError(f"{folder} is not a folder of the state directory")
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / path.name
        os.replace(path, target)
        return target

    def symlink_problems(self) -> list[str]:
        """Symbolic links in the state directory would make the station read or write
        somewhere else than the medium: each one is a problem that stops it."""
        names = [
            "journal.log",
            "checkpoint.cbor",
            "appliance.json",
            "policies",
            "transcripts",
            "pending",
            "pending/rejected",
            "signed",
            "softhsm",
        ]
        found = [self.root / n for n in names if (self.root / n).is_symlink()]
        # files inside the folders are not listed here (100,000 transcripts would make every
        # open slow): pending files are opened with O_NOFOLLOW, transcripts are checked by
        # hash, and writes replace a link by a file (rename), never follow it
        return [
            f"{p} is a symbolic link: the state directory may hold only plain files and folders"
            for p in found
        ]

    def policy_files(self) -> list[Path]:
        return sorted(self.policies_dir.glob("*.cbor"))

    def read_policy(self, version: int, digest: bytes, seq: int) -> SignedPolicy:
        """The signed policy the journal installed at ``seq``, checked against its hash."""
        path = self.policy_path(version)
        try:
            signed = SignedPolicy.from_bytes(path.read_bytes())
        except FileNotFoundError:
            raise StateError(
                f"{path} is missing: the journal installed policy version {version} at seq {seq}"
            ) from None
        except (OSError, ValueError) as exc:
            raise StateError(
                f"{path} is unreadable ({exc}); the journal installed policy "
                f"version {version} at seq {seq}"
            ) from exc
        if signed.policy.hash() != digest:
            raise StateError(
                f"{path} is not the policy the journal installed at seq {seq} "
                f"(hash {signed.policy.hash().hex()[:16]}…, journal says "
                f"{digest.hex()[:16]}…): replaced or edited"
            )
        return signed

    def store_policy(self, signed: SignedPolicy) -> Path:
        """Write a policy about to be installed (the record that installs it comes next,
        so a file left by a crash is rewritten by the rerun; the journal names the one)."""
        path = self.policy_path(signed.policy.version)
        atomic_write(path, signed.to_bytes())
        return path

    # -- signed outputs ---------------------------------------------------------------------

    def signed_path(self, txid_hex: str) -> Path:
        return self.root / "signed" / f"{txid_hex}.psbt"
