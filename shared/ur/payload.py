"""Files <-> UR bodies: what a person hands the CLI and what they get back.

A PSBT file (binary, base64 or hex) becomes a ``psbt``/``crypto-psbt`` body, a descriptor
text file an ``output-descriptor``/``crypto-output`` body, anything else a ``bytes`` body;
and back. Everything is validated on the way in and out (a PSBT is parsed, a descriptor
is checked), so a transfer never carries, or delivers, something malformed.
"""

from __future__ import annotations

import json

from shared.bitcoin.descriptor import Descriptor, DescriptorError
from shared.psbt import Psbt, PsbtError
from shared.ur import registry
from shared.ur.registry import Account, RegistryError

_PSBT_TYPES = frozenset({"psbt", "crypto-psbt"})
_OUTPUT_TYPES = frozenset({"output-descriptor", "crypto-output"})
_ACCOUNT_TYPES = frozenset({"account-descriptor", "crypto-account"})
_KEY_TYPES = frozenset({"hdkey", "crypto-hdkey"})


class PayloadError(ValueError):
    """A file that is not a valid payload for the UR type asked for."""


def file_to_cbor(ur_type: str, data: bytes) -> bytes:
    """The UR body for a file's contents, validated for ``ur_type``."""
    try:
        name = registry.lookup(ur_type).name
        if name in _PSBT_TYPES:
            return registry.encode(name, Psbt.from_text(data))
        if name in _OUTPUT_TYPES:
            return registry.encode(name, Descriptor.parse(_text(data), require_checksum=False))
        return registry.encode(name, data)
    except (PsbtError, DescriptorError, RegistryError) as exc:
        raise PayloadError(f"not a valid {name} payload: {exc}") from exc


def cbor_to_file(ur_type: str, cbor: bytes) -> bytes:
    """The file contents carried by a received UR body."""
    try:
        name = registry.lookup(ur_type).name
        value = registry.decode(name, cbor)
        if name in _PSBT_TYPES:
            return Psbt.parse(value).serialize()  # validated before it reaches a file
    except (PsbtError, RegistryError) as exc:
        raise PayloadError(f"received ur:{ur_type} does not hold a valid payload: {exc}") from exc
    if name in _OUTPUT_TYPES:
        return f"{value}\n".encode()
    if name in _ACCOUNT_TYPES:
        return _account_json(value).encode()
    if name in _KEY_TYPES:  # a key expression, as a descriptor's cosigner key is written
        return f"{value}\n".encode()
    if not isinstance(value, bytes):  # a registry type added without a file form above
        raise PayloadError(f"received ur:{ur_type} has no file form ({type(value).__name__})")
    return value


def _account_json(account: Account) -> str:
    outputs = [
        {
            "descriptor": str(o.descriptor) if o.descriptor else o.text,
            "usable": o.supported,
            "reason": o.reason,
        }
        for o in account.outputs
    ]
    doc = {"master_fingerprint": account.master_fingerprint.hex(), "outputs": outputs}
    return json.dumps(doc, indent=2) + "\n"


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise PayloadError("descriptor file is not UTF-8 text") from exc
