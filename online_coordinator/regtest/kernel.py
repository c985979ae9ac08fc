"""The only module that talks to libbitcoinkernel (py-bitcoinkernel, imported as ``pbk``).

The kernel is the consensus judge: it stores and validates blocks and picks the active
chain; the node mirrors that chain in Python. Everything crossing this boundary is plain
bytes (hashes in internal byte order, serialized blocks), so no kernel view outlives the
chainstate manager it came from.

``process_block`` reports neither acceptance nor a reason, so a block's fate is read from
the validation callback and the reason from the kernel's own log line ("Block validation
error: ..."), which carries Core's reject reason text.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import pbk
from pbk.script import PrecomputedTransactionData

from shared.bitcoin.tx import TxOut

SCRIPT_FLAGS = pbk.ScriptVerificationFlags.ALL
_REASON_PATTERNS = (
    re.compile(r"Block validation error: (.+)"),
    re.compile(r"AcceptBlock FAILED \((.+)\)"),
    re.compile(r"ConnectBlock \S+ failed, (.+)"),
)


class _LogTap:
    """One process-wide kernel log connection; each thread sees only what its calls log.

    Kernel logging is global, and validation logs from the thread that processes the
    block, so a thread-local buffer keeps two nodes in one process from mixing reasons.
    """

    _instance: _LogTap | None = None
    _create_lock = threading.Lock()

    def __init__(self) -> None:
        self._local = threading.local()
        self._connection = pbk.LoggingConnection(self._on_message)

    @classmethod
    def get(cls) -> _LogTap:
        with cls._create_lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def _on_message(self, message: str) -> None:
        lines: list[str] | None = getattr(self._local, "lines", None)
        if lines is not None:
            lines.append(message.strip())

    @contextmanager
    def capture(self) -> Iterator[list[str]]:
        lines: list[str] = []
        self._local.lines = lines
        try:
            yield lines
        finally:
            self._local.lines = None


class Rejection(NamedTuple):
    """Core's reject reason and the debug text it appends after a comma."""

    reason: str
    detail: str | None


def reject_reason(log_lines: Sequence[str]) -> Rejection | None:
    """The first reject reason in the kernel's log, split as Core's ``state.ToString()``."""
    for line in log_lines:
        for pattern in _REASON_PATTERNS:
            match = pattern.search(line)
            if match:
                reason, _, detail = match.group(1).strip().partition(", ")
                return Rejection(reason, detail or None)
    return None


class Kernel:
    """A regtest chainstate manager with block submission and reading by hash."""

    def __init__(self, path: Path) -> None:
        self._tap = _LogTap.get()
        self._invalid: dict[bytes, str] = {}
        callbacks = pbk.ValidationInterfaceCallbacks(block_checked=self._on_block_checked)
        try:
            self._chainman: pbk.ChainstateManager | None = pbk.load_chainman(
                path, pbk.ChainType.REGTEST, validation_callbacks=callbacks
            )
        except RuntimeError as exc:  # the kernel locks its directory against a second user
            raise RuntimeError(f"cannot open kernel data in {path} (in use?): {exc}") from exc

    def _on_block_checked(self, _user_data: Any, block: pbk.Block, state: Any) -> None:
        if state.validation_mode != pbk.ValidationMode.VALID:
            self._invalid[bytes(block.block_hash)] = state.block_validation_result.name

    @property
    def _cm(self) -> pbk.ChainstateManager:
        if self._chainman is None:
            raise RuntimeError("kernel is closed")
        return self._chainman

    def height(self) -> int:
        return self._cm.get_active_chain().height

    def hash_at(self, height: int) -> bytes:
        """Active-chain block hash at ``height`` (internal byte order)."""
        return bytes(self._cm.get_active_chain().block_tree_entries[height].block_hash)

    def read_block(self, block_hash: bytes) -> bytes | None:
        """Raw bytes of any stored block (active or stale), or None if unknown."""
        try:
            entry = self._cm.block_tree_entries[pbk.BlockHash(block_hash)]
            return bytes(self._cm.blocks[entry])
        except (KeyError, RuntimeError):
            return None

    def submit(self, raw: bytes) -> Rejection | None:
        """Hand a block to the kernel; the reject reason if it or its branch proved invalid.

        None means "not found invalid", not "connected": a valid block on a branch with
        no more work than the tip is stored without becoming active. Callers check the tip.
        """
        self._invalid.clear()
        failed = False
        with self._tap.capture() as lines:
            try:
                self._cm.process_block(pbk.Block(raw))
            except (pbk.ProcessBlockException, RuntimeError):
                failed = True
        if not failed and not self._invalid:
            return None
        fallback = next(iter(self._invalid.values()), "unknown")
        return reject_reason(lines) or Rejection("block rejected by the kernel", fallback)

    def close(self) -> None:
        """Destroy the chainstate manager now, flushing its databases to disk."""
        if self._chainman is not None:
            self._chainman.__exit__(None, None, None)
            self._chainman = None


def failing_input(raw_tx: bytes, spent: Sequence[TxOut]) -> int | None:
    """Index of the first input whose script Core's interpreter rejects, else None.

    ``spent`` lists the output each input spends (all of them: taproot signs them all).
    """
    kernel_tx = pbk.Transaction(raw_tx)
    scripts = [pbk.ScriptPubkey(out.script_pubkey) for out in spent]
    outputs = [
        pbk.TransactionOutput(script, out.value) for script, out in zip(scripts, spent, strict=True)
    ]
    precomputed = PrecomputedTransactionData(kernel_tx, outputs)
    for index, (script, out) in enumerate(zip(scripts, spent, strict=True)):
        try:
            valid = script.verify(out.value, kernel_tx, precomputed, index, SCRIPT_FLAGS)
        except pbk.ScriptVerifyException:
            valid = False
        if not valid:
            return index
    return None
