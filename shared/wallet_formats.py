"""Wallets in the forms other wallets write and read (issue 17).

Coldstation's own channel is the descriptor with the station's signed receipt (the
coordinator reads nothing else). These are the same wallet for others to watch or cosign:

- ``bitcoin-core.json``: the ``importdescriptors`` request body for a watch-only Bitcoin
  Core descriptor wallet. Core takes one branch per descriptor, so a ``<0;1>`` descriptor
  is expanded (BIP-389) into its receive and change (``internal``) descriptors.
- ``account.ur`` (``ur:crypto-account``) and ``hdkey.ur`` (``ur:crypto-hdkey``): the
  account xpub with its origin, the forms Sparrow, Keystone, SeedSigner and COLDCARD
  scan. Only for a bip32-seed key's single-key wallet.
- ``receive.ur`` (``ur:crypto-output`` of the ``/0/*`` branch): a ranged multipath
  ``crypto-output`` is misread by the Keystone SDK and crashes urtypes; one branch is read
  by both.
- ``coldcard-multisig.txt``: the multisig setup file COLDCARD registers a wallet from (and
  Sparrow imports), for a ``sortedmulti`` whose every key is an xpub with its origin.

And the other way, a multisig cosigner key as other wallets export it
(:func:`cosigner_key`): a descriptor key expression, a single-key descriptor (Sparrow's
text), or COLDCARD's JSON xpub export; SLIP-132 keys (Zpub, Vpub...) are read as standard.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import suppress

from shared.bitcoin.bip32 import BIP32Error, KeyOrigin, format_path, parse_public_key_any
from shared.bitcoin.descriptor import (
    Descriptor,
    DescriptorError,
    ScriptType,
    add_checksum,
    parse_key,
)
from shared.ur.registry import encode_crypto_account, encode_crypto_hdkey, encode_crypto_output
from shared.ur.ur import UR, UREncoder

#: Addresses Bitcoin Core derives ahead on each branch (its keypool default).
CORE_RANGE_END = 999
#: COLDCARD keeps multisig wallet names to this many characters.
COLDCARD_NAME_CHARS = 20
_COLDCARD_FORMATS = {ScriptType.WSH: "P2WSH", ScriptType.SH_WSH: "P2SH-P2WSH"}
#: COLDCARD's JSON export: (section, key field, derivation field) holding a P2WSH cosigner,
#: in its multisig export (``ccxp-*.json``) and in its generic one.
_COLDCARD_P2WSH = ((None, "p2wsh", "p2wsh_deriv"), ("bip48_2", "xpub", "deriv"))
MAX_IMPORT_CHARS = 20_000
_SLIP132_PREFIXES = frozenset({"ypub", "zpub", "Ypub", "Zpub", "upub", "vpub", "Upub", "Vpub"})


class WalletFormatError(ValueError):
    """A wallet or key another wallet exported that cannot be read, or a wallet that
    cannot be written in a format; the message says which and why."""


def bitcoin_core_request(descriptor: Descriptor, label: str) -> list[dict[str, object]]:
    """The ``importdescriptors`` argument that watches ``descriptor`` (no private keys)."""
    branches = descriptor.expand_multipath() if descriptor.branch_count > 1 else [descriptor]
    request: list[dict[str, object]] = []
    for branch, single in enumerate(branches):
        item: dict[str, object] = {"desc": add_checksum(single.body()), "timestamp": "now"}
        if branch == 0:  # Core refuses a label on an internal (change) descriptor
            item["label"] = label
        if single.is_ranged:
            # not active: Core watches the range but never hands out addresses itself (the
            # coordinator is the one issuer; an address is never handed out twice)
            item |= {"active": False, "range": [0, CORE_RANGE_END], "internal": branch == 1}
        request.append(item)
    return request


def coldcard_multisig_setup(name: str, descriptor: Descriptor) -> str:
    """The COLDCARD multisig setup file for ``descriptor`` (Sparrow imports it too).

    COLDCARD registers a multisig only from each cosigner's xpub and master fingerprint,
    derives ``/0/*`` and ``/1/*`` itself, and sorts keys (BIP-67): so every key must be an
    xpub with its origin and the ``<0;1>/*`` (or ``/0/*``) children, in a ``sortedmulti``.
    """
    kind = _COLDCARD_FORMATS.get(descriptor.script_type)
    if kind is None or not descriptor.sorted_multi:
        raise WalletFormatError("COLDCARD registers sortedmulti wsh or sh(wsh) wallets only")
    if not name.isprintable() or not 0 < len(name) <= COLDCARD_NAME_CHARS:
        raise WalletFormatError(f"a COLDCARD wallet name is 1..{COLDCARD_NAME_CHARS} characters")
    lines = [
        "# Coldcard Multisig setup file (written by Coldstation)",
        f"Name: {name}",
        f"Policy: {descriptor.threshold} of {len(descriptor.keys)}",
        f"Format: {kind}",
        "",
    ]
    for position, key in enumerate(descriptor.keys):
        children = key.resolved_steps(0) + ([0] if key.wildcard else [])
        if key.xpub is None or key.origin is None or not key.wildcard or children[:-1] != [0]:
            raise WalletFormatError(
                f"key {position + 1} is not an xpub with origin and <0;1>/* children: "
                "COLDCARD registers a multisig only from xpubs (an hsm-key is a plain key; "
                "use bip32-seed keys)"
            )
        lines += [
            f"Derivation: {format_path(key.origin.path)}",
            f"{key.origin.fingerprint.hex().upper()}: {key.xpub}",
        ]
    return "\n".join(lines) + "\n"


def cosigner_key(text: str) -> str:
    """A multisig cosigner's key expression (``[fp/path]xpub/<0;1>/*``) from what another
    wallet exports: a key expression, a single-key descriptor (Sparrow's text), or
    COLDCARD's JSON xpub export (multisig ``ccxp-*.json`` or generic); SLIP-132 keys are
    read as standard ones. Raises WalletFormatError naming what is wrong."""
    text = text.strip()
    if len(text) > MAX_IMPORT_CHARS:
        raise WalletFormatError(f"a cosigner export longer than {MAX_IMPORT_CHARS} characters")
    if text.startswith("{"):
        return _coldcard_json_key(text)
    if "(" in text:
        return _single_key_of(text)
    try:
        return str(parse_key(_standard_xpub_text(text)))
    except DescriptorError as exc:
        raise WalletFormatError(f"not a cosigner key: {exc}") from None


def _single_key_of(text: str) -> str:
    try:
        descriptor = Descriptor.parse(text, require_checksum="#" in text)
    except DescriptorError as exc:
        raise WalletFormatError(f"not a descriptor: {exc}") from None
    if len(descriptor.keys) != 1:
        raise WalletFormatError(
            f"the descriptor holds {len(descriptor.keys)} keys: give the cosigner's own "
            "single-key export"
        )
    return _ranged(str(descriptor.keys[0]))


def _coldcard_json_key(text: str) -> str:
    try:
        export = json.loads(text)
    except (ValueError, RecursionError) as exc:  # a nesting bomb is not JSON we read
        raise WalletFormatError(f"not JSON: {str(exc)[:80] or 'nested too deeply'}") from None
    if isinstance(export, dict) and isinstance(export.get("outputs"), list):
        return _account_cosigner(export["outputs"])
    if not isinstance(export, dict) or not isinstance(export.get("xfp"), str):
        raise WalletFormatError("not a COLDCARD export: no master fingerprint (xfp)")
    for section, key_field, path_field in _COLDCARD_P2WSH:
        holder = export if section is None else export.get(section)
        if isinstance(holder, dict) and key_field in holder and path_field in holder:
            return _coldcard_key(export["xfp"], holder[key_field], holder[path_field])
    raise WalletFormatError("the COLDCARD export holds no P2WSH multisig key (p2wsh or bip48_2)")


def _account_cosigner(outputs: list[object]) -> str:
    """The ``wsh(cosigner(KEY))`` entry of a crypto-account (as the coordinator writes a
    received ``ur:crypto-account`` to a file: shared.ur.payload)."""
    for output in outputs:
        text = output.get("descriptor") if isinstance(output, dict) else None
        if isinstance(text, str) and text.startswith("wsh(cosigner(") and text.endswith("))"):
            try:
                return _ranged(str(parse_key(text[len("wsh(cosigner(") : -2])))
            except DescriptorError as exc:
                raise WalletFormatError(f"crypto-account cosigner entry: {exc}") from None
    raise WalletFormatError("the crypto-account holds no wsh cosigner entry")


def _coldcard_key(xfp: object, xpub: object, path: object) -> str:
    if not (isinstance(xfp, str) and isinstance(xpub, str) and isinstance(path, str)):
        raise WalletFormatError("COLDCARD export fields must be text")
    try:
        fingerprint = bytes.fromhex(xfp)
        origin = KeyOrigin.parse(f"{fingerprint.hex()}/{path.removeprefix('m/')}")
        key = parse_public_key_any(xpub)
    except (ValueError, BIP32Error) as exc:
        raise WalletFormatError(f"COLDCARD export: {exc}") from None
    if len(fingerprint) != 4 or key.depth != len(origin.path):
        raise WalletFormatError("COLDCARD export: the xpub's depth does not match its path")
    return f"[{origin.format('h')}]{key}/<0;1>/*"


def _standard_xpub_text(text: str) -> str:
    """A key expression with a SLIP-132 xpub rewritten as the standard one."""
    origin, _, rest = text.rpartition("]")
    head, _, children = rest.partition("/")
    if head[:4] not in _SLIP132_PREFIXES:
        return text
    try:
        standard = str(parse_public_key_any(head))
    except BIP32Error as exc:
        raise WalletFormatError(f"not a cosigner key: {exc}") from None
    return (f"{origin}]" if origin else "") + standard + (f"/{children}" if children else "")


def _ranged(key_text: str) -> str:
    """A bare account xpub gets the ``<0;1>/*`` children a multisig cosigner needs."""
    key = parse_key(key_text)
    if key.xpub is not None and not key.steps and not key.wildcard:
        return f"{key_text}/<0;1>/*"
    return key_text


def _ur_text(ur: UR) -> str:
    parts = UREncoder(ur, 1000).cycle_parts()
    return "\n".join(parts) + "\n"


def wallet_files(descriptors: Sequence[Descriptor], label: str) -> dict[str, str]:
    """A whole wallet (one descriptor, or an hsm-key pool of several) for other wallets:
    :func:`interop_files` of a single descriptor; a pool is one Bitcoin Core import."""
    if len(descriptors) == 1:
        return interop_files(descriptors[0], label)
    request = [item for d in descriptors for item in bitcoin_core_request(d, label)]
    return {"bitcoin-core.json": json.dumps(request, indent=2)}


def interop_files(descriptor: Descriptor, label: str) -> dict[str, str]:
    """File name -> content for every form of ``descriptor`` another wallet reads."""
    files = {"bitcoin-core.json": json.dumps(bitcoin_core_request(descriptor, label), indent=2)}
    if descriptor.script_type.is_multisig:
        with suppress(WalletFormatError):  # plain keys: COLDCARD cannot register it
            files["coldcard-multisig.txt"] = coldcard_multisig_setup(label, descriptor)
        return files
    single_xpub = (
        not descriptor.script_type.is_multisig
        and descriptor.keys[0].xpub is not None
        and descriptor.keys[0].origin is not None
    )
    if not single_xpub:
        return files
    key = descriptor.keys[0]
    assert key.origin is not None
    files["account.ur"] = _ur_text(
        UR("crypto-account", encode_crypto_account(key.origin.fingerprint, [descriptor]))
    )
    files["hdkey.ur"] = _ur_text(UR("crypto-hdkey", encode_crypto_hdkey(key)))
    receive = descriptor.expand_multipath()[0] if descriptor.branch_count > 1 else descriptor
    files["receive.ur"] = _ur_text(UR("crypto-output", encode_crypto_output(receive)))
    return files


__all__ = [
    "CORE_RANGE_END",
    "WalletFormatError",
    "bitcoin_core_request",
    "coldcard_multisig_setup",
    "cosigner_key",
    "interop_files",
    "wallet_files",
]
