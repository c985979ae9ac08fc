"""One exception family for everything PSBT: callers catch :class:`PsbtError` only.

Messages name the map (global, input N, output N) and the field, e.g.
``input 2: PSBT_IN_PARTIAL_SIG: signature is not strict DER``.
"""

from __future__ import annotations


class PsbtError(ValueError):
    """Base class: a PSBT that is malformed, inconsistent, or cannot take the role asked."""


class PsbtSizeError(PsbtError):
    """The encoded PSBT is larger than :data:`shared.psbt.model.MAX_PSBT_SIZE`."""


class PsbtDecodeError(PsbtError):
    """The bytes are not a PSBT: bad magic, truncation, missing separator, trailing data."""


class PsbtFieldError(PsbtError):
    """One key-value record is invalid."""

    def __init__(self, where: str, field: str, problem: str) -> None:
        self.where = where
        self.field = field
        self.problem = problem
        super().__init__(f"{where}: {field}: {problem}")


class PsbtStructureError(PsbtError):
    """Records are individually fine but contradict each other or the PSBT version."""


class PsbtCombineError(PsbtError):
    """PSBTs that cannot be combined (different transactions, conflicting fields)."""


class PsbtFinalizeError(PsbtError):
    """An input cannot be finalized or a PSBT cannot be extracted."""


class PsbtSignerError(PsbtError):
    """The signer refuses an input (BIP-174 signer checks)."""
