"""PSBT: BIP-174 v0 written; v0 and v2 (BIP-370) read; BIP-371/373 fields validated.

``model`` parses and serializes, ``fields`` is the registry of key types and their rules,
``scripts`` resolves how an input is spent, ``roles`` combines, finalizes and extracts,
``signer`` is a software signer for tests and third-party cosigners.
"""

from shared.psbt.errors import (
    PsbtCombineError,
    PsbtDecodeError,
    PsbtError,
    PsbtFieldError,
    PsbtFinalizeError,
    PsbtSignerError,
    PsbtSizeError,
    PsbtStructureError,
)
from shared.psbt.model import MAX_PSBT_SIZE, Psbt, PsbtInput, PsbtOutput
from shared.psbt.roles import FinalizeResult, combine, extract, finalize

__all__ = [
    "MAX_PSBT_SIZE",
    "FinalizeResult",
    "Psbt",
    "PsbtCombineError",
    "PsbtDecodeError",
    "PsbtError",
    "PsbtFieldError",
    "PsbtFinalizeError",
    "PsbtInput",
    "PsbtOutput",
    "PsbtSignerError",
    "PsbtSizeError",
    "PsbtStructureError",
    "combine",
    "extract",
    "finalize",
]
