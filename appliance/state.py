"""The appliance's state directory: what lives where, and its small configuration file.

    STATE/appliance.json   appliance id, network, token labels, officer and admin tokens
    STATE/keys.json        the keystore's key registry (labels, public keys, states)
    STATE/pin-guard.json   the appliance's own PIN retry counters
    STATE/journal.log      the hash-chained, signed journal
    STATE/policies/        every installed signed policy, NNNN.cbor, never deleted
    STATE/softhsm/         SoftHSM2's token store in demo mode

The signing token's PIN is not here: it exists only while M officers are present.
"""

from __future__ import annotations

import json
import os
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


class ApplianceState:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @property
    def config_path(self) -> Path:
        return self.root / "appliance.json"

    @property
    def keys_path(self) -> Path:
        return self.root / "keys.json"

    @property
    def guard_path(self) -> Path:
        return self.root / "pin-guard.json"

    @property
    def journal_path(self) -> Path:
        return self.root / "journal.log"

    @property
    def policies_dir(self) -> Path:
        return self.root / "policies"

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

    # -- policies --------------------------------------------------------------------------

    # -- the pinned wallet ------------------------------------------------------------------

    @property
    def wallets_path(self) -> Path:
        return self.root / "wallets.json"

    def pinned_descriptors(self) -> list[str]:
        """Descriptors this appliance signs for, pinned by ceremony, never by a request."""
        if not self.wallets_path.is_file():
            return []
        try:
            data = json.loads(self.wallets_path.read_text())
        except ValueError as exc:
            raise StateError(f"{self.wallets_path}: unreadable ({exc})") from exc
        return [str(d) for d in data.get("descriptors", [])]

    def pin_descriptor(self, descriptor: str) -> None:
        pinned = self.pinned_descriptors()
        if descriptor not in pinned:
            pinned.append(descriptor)
            atomic_write(self.wallets_path, json.dumps({"descriptors": pinned}, indent=2).encode())

    # -- display transcripts ---------------------------------------------------------------

    def store_transcript(self, plain: dict) -> bytes:
        """Keep what the officers were shown; returns its hash for the journal record."""
        digest = canonical.digest(plain)
        path = self.root / "transcripts" / f"{digest.hex()}.cbor"
        if not path.exists():
            atomic_write(path, canonical.encode(plain))
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

    def pending(self) -> list[tuple[Path, dict]]:
        if not self.pending_dir.is_dir():
            return []
        return [(path, canonical.decode(path.read_bytes()))
                for path in sorted(self.pending_dir.glob("*.cbor"))]  # fmt: skip

    def policy_files(self) -> list[Path]:
        return sorted(self.policies_dir.glob("*.cbor"))

    def installed_policy(self) -> SignedPolicy | None:
        files = self.policy_files()
        return SignedPolicy.from_bytes(files[-1].read_bytes()) if files else None

    def store_policy(self, signed: SignedPolicy) -> Path:
        path = self.policies_dir / f"{signed.policy.version:04d}.cbor"
        if path.exists():
            raise StateError(f"policy version {signed.policy.version} is already installed")
        atomic_write(path, signed.to_bytes())
        return path
