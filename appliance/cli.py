"""``coldstation-appliance``: the cold station's ceremonies, headless and scriptable.

Every ceremony asks for PINs at a prompt, or reads them one per line from the descriptor
given with ``--pin-fd`` (never from argv or the environment). Officers and administrators
are named by their token labels. Exit status (mapped in :mod:`appliance.exit_codes`): 0
done, 1 refused (with the reason; the journal says so where it can), 2 bad usage or input.
``--state DIR`` may be given before the ceremony or after it.

With no ceremony named, the Textual application starts (home, scan, review, approvals,
signed QR, keys, officers, policy, journal).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from appliance.appliance import Appliance
from appliance.backup import new_kek_shares, share_problem
from appliance.exit_codes import REFUSALS, ExitCode, failure
from appliance.initialise import MAX_PIN, MIN_PIN, EnrolmentPlan, enrol, initialise
from appliance.journal_store import JournalLockedError
from appliance.keystore import BackupModel, KeyState
from appliance.pins import PinSource
from appliance.policy_draft import PolicyChanges, draft_next
from appliance.signing import SigningSession, approved_request
from appliance.state import ApplianceState
from appliance.station import ADDRESS_CHECK_DEPTH, CeremonyError
from shared.adapters.console import add_version, quiet_exits
from shared.bitcoin.bip32 import fingerprint
from shared.bitcoin.descriptor import Descriptor
from shared.journal import audit_key_fingerprint, export_journal
from shared.key_models import HSM_KEY, KEY_MODELS
from shared.policy import Policy, SignedPolicy
from shared.policy_text import policy_diff, policy_lines
from shared.review import OutputView, Review, requester_line, review_locks_text
from shared.ur.payload import cbor_to_file
from shared.ur.registry import encode_bytes, encode_crypto_output, encode_psbt
from shared.ur.ur import UR, UREncoder
from shared.wallet_formats import interop_files

DEFAULT_STATE = Path("coldstation-appliance-state")


def _add_state(parser: argparse.ArgumentParser, default: object = argparse.SUPPRESS) -> None:
    """``--state DIR``, on the program (with the default) and on each ceremony (without one,
    so it does not overwrite the program's): before the ceremony or after it, the last one
    given wins."""
    parser.add_argument(
        "--state", type=Path, default=default, help=f"state directory (default ./{DEFAULT_STATE})"
    )


def _command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help: str
) -> argparse.ArgumentParser:
    """A ceremony's parser, which takes ``--state`` after its name too."""
    parser = commands.add_parser(name, help=help)
    _add_state(parser)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="coldstation-appliance", description=__doc__)
    add_version(parser)
    _add_state(parser, DEFAULT_STATE)
    parser.add_argument("--pin-fd", type=int, help="read PINs, one per line, from this fd")
    parser.add_argument(
        "--camera", default="0", help="TUI scan source: camera index or video file (default 0)"
    )
    sub = parser.add_subparsers(dest="command", required=False, metavar="CEREMONY")

    init = _command(sub, "init", help="create tokens, officers, administrators, first policy")
    init.add_argument("--network", default="regtest")
    init.add_argument("--officers", type=int, default=3)
    init.add_argument("--quorum", type=int, default=2)
    init.add_argument("--admins", type=int, default=2)
    init.add_argument("--admin-quorum", type=int, default=2)
    init.add_argument("--demo", action="store_true", help="provision SoftHSM2 tokens")
    init.add_argument(
        "--plan",
        type=Path,
        help="enrol the custodian's own tokens: a TOML file naming each token's PKCS#11 "
        "module and label or serial (docs/hardware.md); PINs are asked for",
    )
    init.add_argument(
        "--start-over",
        action="store_true",
        help="wipe a half-made demo station in --state first (never a finished one)",
    )
    init.set_defaults(handler=init_command)

    def with_officers(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--officers", required=True, help="officer token labels, comma separated")
        return p

    keygen = with_officers(_command(sub, "keygen", help="generate a signing key in the HSM"))
    keygen.add_argument("label")
    keygen.add_argument(
        "--backup-model",
        choices=[m.value for m in BackupModel],
        default=BackupModel.NON_EXTRACTABLE.value,
    )
    keygen.add_argument(
        "--key-model",
        choices=KEY_MODELS,
        default=HSM_KEY,
        help="hsm-key: one key that never leaves the HSM, one address; bip32-seed: a seed "
        "the HSM generates and keeps, unlimited addresses from its account xpub, read into "
        "the station's memory while a ceremony signs (docs/design.md, key models)",
    )
    keygen.set_defaults(handler=keygen_command)

    export = with_officers(_command(sub, "export-wallet", help="descriptor + signed receipt"))
    export.add_argument("label")
    export.add_argument("--out", type=Path, required=True, help="folder for the export files")
    export.set_defaults(handler=export_wallet_command)

    for name, state in (
        ("suspend", KeyState.SUSPENDED),
        ("reactivate", KeyState.ACTIVE),
        ("archive", KeyState.ARCHIVED),
    ):
        cmd = with_officers(_command(sub, name, help=f"{name} a key"))
        cmd.add_argument("label")
        cmd.add_argument(
            "--out",
            type=Path,
            help="write the receipt here (key.receipt, receipt.ur) for `wallet key-state`",
        )
        cmd.set_defaults(handler=key_state_command, key_state=state)

    policy = sub.add_parser("policy", help="draft, sign, install and show policies")
    psub = policy.add_subparsers(dest="policy_command", required=True, metavar="ACTION")
    draft = _command(psub, "draft", help="the next policy version, with changes")
    draft.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting, its unit in its name: per_tx_limit_btc=0.5, per_day_limit_btc=2, "
        "max_fee_sat=25000, fee_rate_ceiling_sat_per_vb=50, request_ttl_max_s=86400, "
        "approval_quorum=2, require_address_book=true (see docs/runbooks/key-ceremony.md 7)",
    )
    draft.add_argument("--add-address", action="append", default=[], metavar="ADDRESS=LABEL")
    draft.add_argument(
        "--revoke",
        action="append",
        default=[],
        metavar="FINGERPRINT",
        help="revoke an officer (kept listed, inactive)",
    )
    draft.add_argument(
        "--add-requester",
        action="append",
        default=[],
        type=Path,
        metavar="FILE",
        help="a requester's passkey (coldstation-coordinator requester enrol writes FILE): "
        "requests must then carry a listed requester's assertion",
    )
    draft.add_argument(
        "--requester-officer",
        action="append",
        default=[],
        metavar="NAME=FINGERPRINT",
        help="the officer key the requester NAME also holds: it never approves their requests",
    )
    draft.add_argument(
        "--revoke-requester", action="append", default=[], metavar="NAME", help="revoke a requester"
    )
    draft.add_argument(
        "--internal-wallet",
        action="append",
        default=[],
        metavar="DESCRIPTOR",
        help="a wallet of the custodian's own: outputs to it count as change "
        "and the station may pin it",
    )
    draft.add_argument("-o", "--out", type=Path, required=True)
    draft.set_defaults(handler=policy_draft_command)
    sign = _command(psub, "sign", help="administrators sign a drafted policy")
    sign.add_argument("draft", type=Path)
    sign.add_argument("--admins", required=True, help="administrator token labels")
    sign.add_argument("-o", "--out", type=Path, required=True)
    sign.set_defaults(handler=policy_sign_command)
    install = with_officers(_command(psub, "install", help="install a signed policy"))
    install.add_argument("signed", type=Path)
    install.set_defaults(handler=policy_install_command)
    show = _command(psub, "show", help="print the installed policy, in units (--json: as stored)")
    show.add_argument("--json", action="store_true", help="the document itself, as JSON")
    show.set_defaults(handler=policy_show_command)

    journal = sub.add_parser("journal", help="verify, export or recover the journal")
    jsub = journal.add_subparsers(dest="journal_command", required=True, metavar="ACTION")
    verify = _command(jsub, "verify", help="check the hash chain and every signature")
    verify.set_defaults(handler=journal_verify_command)
    jexport = with_officers(_command(jsub, "export", help="export for the auditors"))
    jexport.add_argument("--out", type=Path, required=True, help="export file (CBOR)")
    jexport.add_argument("--ur", action="store_true", help="also print ur:bytes parts")
    jexport.add_argument(
        "--evidence",
        type=Path,
        metavar="DIR",
        help="also write the audit bundle: journal.cbor, every installed "
        "policy and every review transcript",
    )
    jexport.set_defaults(handler=journal_export_command)
    recover = with_officers(
        _command(
            jsub,
            "recover",
            help="administrators journal a damaged tail or lost records, then go on",
        )
    )
    recover.add_argument("--admins", required=True, help="administrator token labels")
    recover.set_defaults(handler=journal_recover_command)
    jrestore = _command(
        jsub,
        "restore",
        help="replace a lost or damaged journal.log with an "
        "export's records (they must verify under this station's key)",
    )
    jrestore.add_argument("export", type=Path, help="a `journal export` file (CBOR)")
    jrestore.set_defaults(handler=journal_restore_command)

    def with_kek_shares(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument(
            "--kek-shares",
            type=int,
            default=2,
            metavar="N",
            help="KEK shares the custodians enter (read like PINs; default 2)",
        )
        return p

    kek = _command(sub, "kek", help="backup KEK: new custodian shares")
    kek.add_argument("action", choices=["new-shares"])
    kek.add_argument("--shares", default="2,3", help="threshold,count (default 2,3)")
    kek.set_defaults(handler=kek_command)
    backup = with_officers(_command(sub, "backup", help="wrap a key under the trusted KEK"))
    backup.add_argument("label")
    backup.add_argument("--out", type=Path, required=True, help="backup blob file")
    with_kek_shares(backup)
    backup.set_defaults(handler=backup_command)
    restore = with_officers(_command(sub, "restore", help="unwrap a backup onto this token"))
    restore.add_argument("blob", type=Path)
    restore.add_argument("--label", required=True)
    restore.add_argument("--public-key", required=True, help="the original key, hex")
    with_kek_shares(restore)
    restore.set_defaults(handler=restore_command)
    store = with_officers(
        _command(sub, "backup-store", help="record where a backup blob is kept, and by whom")
    )
    store.add_argument("blob", type=Path, help="the blob file (its SHA-256 names it)")
    store.add_argument("--bag", required=True, help="the tamper-evident bag's serial")
    store.add_argument("--location", required=True, help="where the bag is kept")
    store.add_argument(
        "--custodian", action="append", required=True, help="a custodian (repeat for each)"
    )
    store.set_defaults(handler=backup_store_command)
    test = with_officers(
        _command(
            sub, "backup-test", help="prove a blob restores, on a spare token, then destroy it"
        )
    )
    test.add_argument("blob", type=Path)
    test.add_argument("--token", required=True, help="the spare token's label (never signing)")
    with_kek_shares(test)
    test.set_defaults(handler=backup_test_command)
    register = _command(sub, "backups", help="the backup register, overdue tests marked")
    register.set_defaults(handler=backups_command)

    sign = _command(sub, "sign", help="the signing ceremony, headless")
    source = sign.add_mutually_exclusive_group(required=True)
    source.add_argument("--in", dest="infile", type=Path, help="PSBT file (binary/base64/hex)")
    source.add_argument("--video", help="scan an animated QR from a video file")
    source.add_argument("--camera", type=int, help="scan from a camera device")
    sign.add_argument("--officers", required=True, help="approving officers' token labels")
    sign.add_argument(
        "--approvals",
        type=int,
        metavar="FD",
        help="read the officers' PINs from this descriptor (as --pin-fd)",
    )
    target = sign.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", type=Path, help="write the signed PSBT (binary)")
    target.add_argument("--show", action="store_true", help="print the signed PSBT's UR parts")
    sign.set_defaults(handler=sign_command)

    pin_wallet = with_officers(_command(sub, "pin-wallet", help="pin a wallet descriptor"))
    pin_wallet.add_argument("descriptor")
    pin_wallet.add_argument(
        "--admins", default="", help="administrator token labels (unless the policy names it)"
    )
    pin_wallet.add_argument(
        "--out", type=Path, help="write the pin receipt here (wallet.receipt, receipt.ur)"
    )
    pin_wallet.set_defaults(handler=pin_wallet_command)
    unpin = with_officers(_command(sub, "unpin-wallet", help="administrators unpin a wallet"))
    unpin.add_argument("descriptor")
    unpin.add_argument("--admins", required=True, help="administrator token labels")
    unpin.set_defaults(handler=unpin_wallet_command)

    reset = _command(sub, "reset-lockout", help="administrators unlock an officer token")
    reset.add_argument("officer", help="the locked-out officer's token label")
    reset.add_argument("--admins", required=True, help="administrator token labels")
    reset.set_defaults(handler=reset_lockout_command)

    check = _command(sub, "address-check", help="is this address one of our wallets'?")
    check.add_argument("address")
    check.add_argument(
        "--up-to",
        type=int,
        default=ADDRESS_CHECK_DEPTH,
        help="highest index looked at on each branch of a ranged wallet (default %(default)s)",
    )
    check.set_defaults(handler=address_check_command)

    status = _command(sub, "status", help="appliance, keys, policy and journal head")
    status.set_defaults(handler=status_command)
    return parser


@quiet_exits
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command is None:
        from appliance.tui.app import run  # the TUI's imports are only paid for when used

        return run(args.state, camera=args.camera)
    try:
        return int(args.handler(args))
    except Exception as exc:
        mapped = failure(exc)
        if mapped is None:
            raise
        code, line = mapped
        print(line, file=sys.stderr)
        return int(code)


# -- helpers ----------------------------------------------------------------------------


def _labels(text: str) -> list[str]:
    labels = [label.strip() for label in text.split(",") if label.strip()]
    if len(set(labels)) != len(labels):
        raise CeremonyError("the same token is named twice")
    return labels


def _present(args: argparse.Namespace, labels: list[str]) -> list[tuple[str, str]]:
    pins = PinSource(args.pin_fd)
    return [(label, pins.pin(label)) for label in labels]


def _appliance(args: argparse.Namespace, read_only_beside: bool = False) -> Appliance:
    """The station, opened; with ``read_only_beside``, opened read-only when another
    process (the officers' TUI) holds its journal, and said so on stderr."""
    try:
        appliance = Appliance(args.state)
    except JournalLockedError:
        if not read_only_beside:
            raise
        appliance = Appliance(args.state, read_only=True)
        print(
            "note: the station is open in another process (the officers' TUI): shown "
            "read-only, as its journal stands now",
            file=sys.stderr,
        )
    for note in appliance.notes:
        print(f"note: {note}", file=sys.stderr)
    appliance.on_note = lambda text: print(f"note: {text}", file=sys.stderr)
    for problem in appliance.problems:
        print(f"problem: {problem}", file=sys.stderr)
    return appliance


def _pairs(items: list[str]) -> list[tuple[str, str]]:
    """``NAME=VALUE`` arguments as (name, value); a missing ``=`` leaves the value empty."""
    return [(name, value) for name, _, value in (item.partition("=") for item in items)]


def _done(entry_seq: int, what: str) -> int:
    print(f"{what} (journal seq {entry_seq})")
    return 0


# -- ceremonies -------------------------------------------------------------------------


def init_command(args: argparse.Namespace) -> int:
    pins = PinSource(args.pin_fd)
    if args.plan is not None:
        if args.demo:
            raise CeremonyError("--plan enrols real tokens; --demo makes SoftHSM2 ones: not both")
        plan = EnrolmentPlan.from_file(args.plan)
        notes: list[str] = []
        result = enrol(args.state, plan, pins.pin, notes)
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
    else:
        officers = [f"officer-{i}" for i in range(1, args.officers + 1)]
        admins = [f"admin-{i}" for i in range(1, args.admins + 1)]
        presented = [
            (label, pins.new_pin(f"{label}'s new token", MIN_PIN, MAX_PIN)) for label in officers
        ]
        admin_pins = [
            (label, pins.new_pin(f"{label}'s new token", MIN_PIN, MAX_PIN)) for label in admins
        ]
        result = initialise(
            args.state,
            args.network,
            presented,
            admin_pins,
            args.quorum,
            args.admin_quorum,
            demo=args.demo,
            start_over=args.start_over,
        )
    print(
        json.dumps(
            {
                "appliance_id": result.appliance_id,
                "officers": dict(zip(result.officer_labels, result.officers, strict=True)),
                "administrators": dict(
                    zip(result.administrator_labels, result.administrators, strict=True)
                ),
                "audit_public_key": result.audit_public_key.hex(),
                "policy_hash": result.policy_hash.hex(),
            },
            indent=2,
        )
    )
    return 0


def keygen_command(args: argparse.Namespace) -> int:
    with _appliance(args) as appliance:
        entry = appliance.keygen(
            _present(args, _labels(args.officers)),
            args.label,
            BackupModel(args.backup_model),
            args.key_model,
        )
        xpub = entry.record.details.get("xpub")
        if xpub:
            print(f"account [{entry.record.details['key_origin']}]{xpub}")
        public_key = entry.record.subjects["public_key"]
        print(f"public key {public_key.hex()} (fingerprint {fingerprint(public_key).hex()})")
        return _done(entry.record.seq, f"generated key {args.label}")


def export_wallet_command(args: argparse.Namespace) -> int:
    with _appliance(args) as appliance:
        descriptor, receipt = appliance.export_wallet(
            _present(args, _labels(args.officers)), args.label
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "wallet.descriptor").write_text(f"{descriptor}\n")
    _write_ur(args.out / "wallet.ur", UR("crypto-output", encode_crypto_output(descriptor)))
    for name, text in interop_files(descriptor, args.label).items():
        (args.out / name).write_text(text)
    _write_receipt(args.out, receipt.to_bytes())
    print(descriptor)
    return _done(receipt.record.seq, f"wallet exported to {args.out}")


def key_state_command(args: argparse.Namespace) -> int:
    with _appliance(args) as appliance:
        entry = appliance.set_key_state(
            _present(args, _labels(args.officers)), args.label, args.key_state
        )
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        _write_receipt(args.out, entry.to_bytes(), "key.receipt")
    return _done(entry.record.seq, f"key {args.label} is now {args.key_state.value}")


def policy_draft_command(args: argparse.Namespace) -> int:
    changes = PolicyChanges(
        settings=_pairs(args.set),
        internal_wallets=args.internal_wallet,
        addresses=_pairs(args.add_address),
        revoked=args.revoke,
        requesters=[path.read_bytes() for path in args.add_requester],
        requester_officers=_pairs(args.requester_officer),
        revoked_requesters=args.revoke_requester,
    )
    with _appliance(args) as appliance:
        current = appliance.policy()
    draft = draft_next(current, changes)
    args.out.write_bytes(draft.to_bytes())
    _show_change(current, draft)
    print(f"policy version {draft.version} drafted: {args.out}")
    return 0


def policy_sign_command(args: argparse.Namespace) -> int:
    draft = Policy.from_bytes(args.draft.read_bytes())
    with _appliance(args) as appliance:
        _show_change(appliance.policy(), draft)  # before any administrator's PIN is asked
        signed = appliance.sign_policy(_present(args, _labels(args.admins)), draft)
    args.out.write_bytes(signed.to_bytes())
    print(f"policy version {draft.version} signed by {len(signed.signatures)}: {args.out}")
    return 0


def policy_install_command(args: argparse.Namespace) -> int:
    signed = SignedPolicy.from_bytes(args.signed.read_bytes())
    with _appliance(args) as appliance:
        _show_change(appliance.policy(), signed.policy)  # before any officer's PIN is asked
        entry = appliance.install_policy(_present(args, _labels(args.officers)), signed)
        return _done(entry.record.seq, f"policy version {signed.policy.version} installed")


def _show_change(installed: Policy, new: Policy) -> None:
    """What a policy says and what it changes from the installed one, in units (stderr,
    so stdout stays what scripts read)."""
    print(f"policy version {new.version}, in full:", file=sys.stderr)
    for line in policy_lines(new):
        print(f"  {line}", file=sys.stderr)
    changes = policy_diff(installed, new)
    print(f"changes from the installed version {installed.version}:", file=sys.stderr)
    for line in changes or ["(none: only the version)"]:
        print(f"  {line}", file=sys.stderr)


def policy_show_command(args: argparse.Namespace) -> int:
    with _appliance(args) as appliance:
        policy = appliance.policy()
    if args.json:
        print(json.dumps(policy.to_plain(), indent=2, default=lambda b: b.hex()))
    else:
        print("\n".join(policy_lines(policy)))
    return 0


def journal_verify_command(args: argparse.Namespace) -> int:
    with _appliance(args) as appliance:
        problems = appliance.verify_journal()
        length = len(appliance.recorder.store)
    for problem in problems:
        print(problem)
    print(f"{length} records: " + ("OK" if not problems else f"{len(problems)} problem(s)"))
    return 0 if not problems else 1


def journal_recover_command(args: argparse.Namespace) -> int:
    with _appliance(args) as appliance:
        pins = PinSource(args.pin_fd)
        officers = [(label, pins.pin(label)) for label in _labels(args.officers)]
        admins = [(label, pins.pin(label)) for label in _labels(args.admins)]
        entry = appliance.recover_journal(officers, admins)
        details = entry.record.details
        lost = details.get("lost_through")
        what = f"kept through seq {details['kept_through']}"
        if details.get("quarantine"):
            what += f", damaged tail kept in {details['quarantine']}"
        if lost is not None:
            what += f", records up to seq {lost} journaled as lost"
        return _done(entry.record.seq, f"journal recovered: {what}")


def journal_restore_command(args: argparse.Namespace) -> int:
    with _appliance(args) as appliance:
        length, kept_aside = appliance.restore_journal(args.export.read_bytes())
        left = appliance.problems
    kept = ", ".join(path.name for path in kept_aside)
    print(
        f"journal restored from {args.export}: {length} records"
        + (f" (the old files are kept as {kept})" if kept else "")
    )
    for problem in left:
        print(f"still: {problem}", file=sys.stderr)
    return 0


def journal_export_command(args: argparse.Namespace) -> int:
    with _appliance(args) as appliance:
        entry = appliance.export_journal(_present(args, _labels(args.officers)))
        document = export_journal(
            appliance.recorder.entries(),
            appliance.config.appliance_id,
            appliance.keystore.audit_public_key(),
        )
        versions = [ref.version for ref in appliance.journal.policies]
    args.out.write_bytes(document)
    if args.evidence is not None:
        _write_evidence(args, document, versions)
    if args.ur:
        for part in UREncoder(UR("bytes", encode_bytes(document)), 400).cycle_parts():
            print(part)
    return _done(entry.record.seq, f"journal exported to {args.out}")


def _write_evidence(args: argparse.Namespace, document: bytes, named_policies: list[int]) -> None:
    """The auditor's bundle: the journal, the policies it names, the transcripts it hashes.

    Transcripts (what officers were shown) and policies are too large for journal records;
    the records carry their hashes, so the auditor checks every file against the journal.
    """
    state = ApplianceState(args.state)
    bundle: Path = args.evidence
    (bundle / "policies").mkdir(parents=True, exist_ok=True)
    (bundle / "transcripts").mkdir(exist_ok=True)
    (bundle / "journal.cbor").write_bytes(document)
    for ref in named_policies:
        path = state.policy_path(ref)
        shutil.copyfile(path, bundle / "policies" / path.name)
    for path in sorted((state.root / "transcripts").glob("*.cbor")):
        shutil.copyfile(path, bundle / "transcripts" / path.name)


def kek_command(args: argparse.Namespace) -> int:
    """``new-shares`` prints SLIP-39 shares of a fresh KEK, one per custodian (written down,
    never stored). The KEK itself enters a token only inside ``backup`` and ``restore``."""
    threshold, _, count = args.shares.partition(",")
    for number, share in enumerate(new_kek_shares(int(threshold), int(count)), start=1):
        print(f"custodian {number}: {share}")
    return 0


def _kek_shares(args: argparse.Namespace) -> list[str]:
    pins = PinSource(args.pin_fd)
    count = args.kek_shares
    return [pins.checked(f"KEK share {i} of {count}", share_problem) for i in range(1, count + 1)]


def backup_command(args: argparse.Namespace) -> int:
    with _appliance(args) as appliance:
        officers = _present(args, _labels(args.officers))
        blob, entry = appliance.backup_key(officers, args.label, _kek_shares(args))
    args.out.write_bytes(blob)
    check = entry.record.details["kek_check"]
    return _done(
        entry.record.seq,
        f"key {args.label} wrapped to {args.out} (KEK check {check}; "
        "the KEK was destroyed in the token)",
    )


def restore_command(args: argparse.Namespace) -> int:
    with _appliance(args) as appliance:
        officers = _present(args, _labels(args.officers))
        entry = appliance.restore(
            officers,
            args.blob.read_bytes(),
            args.label,
            bytes.fromhex(args.public_key),
            _kek_shares(args),
        )
        return _done(entry.record.seq, f"key {args.label} restored and proven")


def backup_store_command(args: argparse.Namespace) -> int:
    digest = hashlib.sha256(args.blob.read_bytes()).digest()
    with _appliance(args) as appliance:
        officers = _present(args, _labels(args.officers))
        entry = appliance.store_backup(officers, digest, args.bag, args.location, args.custodian)
        return _done(entry.record.seq, f"blob {digest.hex()[:16]} recorded in bag {args.bag}")


def backup_test_command(args: argparse.Namespace) -> int:
    """Officers, then the spare token's SO PIN and user PIN, then the KEK shares."""
    blob = args.blob.read_bytes()
    with _appliance(args) as appliance:
        appliance.check_test_restore(blob, args.token)
        officers = _present(args, _labels(args.officers))
        pins = PinSource(args.pin_fd)
        token_pins = (pins.pin(f"{args.token} (SO)"), pins.pin(f"{args.token} (user)"))
        entry = appliance.test_restore(officers, blob, args.token, token_pins, _kek_shares(args))
    details = entry.record.details
    if details["result"] != "ok":
        print(f"test restore FAILED: {details['reason']} (journal seq {entry.record.seq})")
        return ExitCode.REFUSED
    return _done(entry.record.seq, f"blob restored and proven on {args.token}, then destroyed")


def backups_command(args: argparse.Namespace) -> int:
    """Read-only: the register as the journal records it."""
    with _appliance(args) as appliance:
        register = appliance.journal.backup_register(int(time.time()))
    print(json.dumps(register, indent=2))
    return 0


def _scan_psbt(args: argparse.Namespace) -> bytes:
    from shared.adapters.scan import scan_source  # OpenCV loads only to scan

    receiver = scan_source(
        args.video if args.video is not None else args.camera,
        error=CeremonyError,
        expected_types=["crypto-psbt", "psbt"],
    )
    if receiver.result is None:
        raise CeremonyError(f"scan incomplete: {receiver.progress()}")
    return cbor_to_file(receiver.result.ur_type, receiver.result.cbor)


def _print_review(review: Review) -> None:
    request, request_hash = approved_request(review)
    print(
        f"request {request.request_id.hex()} from {requester_line(review)}, "
        f"network {review.network}"
    )
    for out in review.outputs:
        print(f"  output {out.index}: {out.amount} sat to {out.address} [{_output_tag(out)}]")
    rate = "?" if review.fee_rate is None else f"{review.fee_rate / 1000:g}"
    print(f"  fee {review.fee} sat, {rate} sat/vB (about {review.vsize} vB)")
    print(f"  {review_locks_text(review)}")
    print(f"  request hash {request_hash.hex()}")
    print(f"  words: {review.hash_words}")


def _output_tag(out: OutputView) -> str:
    """What an output is to the officers: change, or a payment (to the address book or
    not), naming our own key when a payment goes to another of this station's wallets."""
    if out.is_change:
        return "change (ours)"
    book = out.label or "NOT IN ADDRESS BOOK"
    if out.wallet is None:
        return book
    key = out.wallet.our_key.label
    return f"{book}; our key {key!r} (another wallet): counted as paid out"


def sign_command(args: argparse.Namespace) -> int:
    if args.approvals is not None:
        args.pin_fd = args.approvals
    data = args.infile.read_bytes() if args.infile is not None else _scan_psbt(args)
    with _appliance(args) as appliance:
        session = SigningSession(appliance)
        review = session.load(data)
        if session.previous is not None:
            return _show_again(args, session)
        if review is None or not review.approved_for_signing:
            presented = _present(args, _labels(args.officers))
            appliance.flush_pending(presented)  # journal the refusal now, officers present
            reasons = (
                "malformed PSBT"
                if review is None
                else "; ".join(f"{r.code}: {r.message}" for r in review.refusals)
            )
            raise CeremonyError(f"request refused, nothing signed: {reasons}")
        _print_review(review)  # what the officers approve, before anyone enters a PIN
        presented = _present(args, _labels(args.officers))
        try:
            for label, pin in presented:
                state = session.approve(label, pin)
                print(f"approved by {label}: {len(state.approved)} of {state.needed}")
        except REFUSALS as exc:
            session.refuse(f"approval failed: {exc}")  # journaled at the next activation
            raise
        result = session.sign()
    _emit_signed(args, result.psbt_bytes)
    return _done(result.receipt_seq, f"signed {result.signatures} input(s)")


def _emit_signed(args: argparse.Namespace, psbt_bytes: bytes) -> None:
    if args.out is not None:
        args.out.write_bytes(psbt_bytes)
    else:
        for part in UREncoder(UR("crypto-psbt", encode_psbt(psbt_bytes)), 400).cycle_parts():
            print(part)


def _show_again(args: argparse.Namespace, session: SigningSession) -> int:
    """A request the journal already approved: its signed PSBT again, never a second
    approval. From the station's copy when it holds one; else (lost in a crash) signed
    again after M officers activate, journaled as a reissue and counted nowhere."""
    assert session.previous is not None
    seq = session.previous.record.seq
    print(
        f"this request was approved at journal seq {seq}: showing its signed PSBT again "
        "(no new approval)",
        file=sys.stderr,
    )
    data = session.reshow()
    if data is None:
        print(
            "the station's copy of the signed PSBT is missing or does not verify: "
            "officers activate to sign the same transaction again",
            file=sys.stderr,
        )
        result = session.reissue(_present(args, _labels(args.officers)))
        data = result.psbt_bytes
    _emit_signed(args, data)
    return _done(seq, "signed PSBT shown again")


def pin_wallet_command(args: argparse.Namespace) -> int:
    descriptor = Descriptor.parse(args.descriptor, require_checksum=False)
    with _appliance(args) as appliance:
        admins = _present(args, _labels(args.admins)) if args.admins else []
        entry = appliance.pin_wallet(_present(args, _labels(args.officers)), descriptor, admins)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        _write_receipt(args.out, entry.to_bytes())
    return _done(entry.record.seq, f"pinned {descriptor}")


def unpin_wallet_command(args: argparse.Namespace) -> int:
    descriptor = Descriptor.parse(args.descriptor, require_checksum=False)
    with _appliance(args) as appliance:
        admins = _present(args, _labels(args.admins))
        entry = appliance.unpin_wallet(_present(args, _labels(args.officers)), descriptor, admins)
    return _done(entry.record.seq, f"unpinned {descriptor}")


def _write_ur(path: Path, ur: UR) -> None:
    """One full cycle of UR parts, one per line: what the animated QR shows, as text."""
    path.write_text("\n".join(UREncoder(ur, 200).cycle_parts()) + "\n")


def _write_receipt(out: Path, entry_bytes: bytes, name: str = "wallet.receipt") -> None:
    """The signed journal entry for the coordinator, as a file and as ``ur:bytes`` parts."""
    (out / name).write_bytes(entry_bytes)
    _write_ur(out / "receipt.ur", UR("bytes", encode_bytes(entry_bytes)))


def reset_lockout_command(args: argparse.Namespace) -> int:
    with _appliance(args) as appliance:
        evidence = appliance.reset_lockout(_present(args, _labels(args.admins)), args.officer)
    print(
        f"{args.officer} may try its PIN again; the reset is journaled at the next "
        f"activation ({evidence.name})"
    )
    return 0


def address_check_command(args: argparse.Namespace) -> int:
    """0 and where it is, for an address of a pinned wallet; 1 (refused) when it is not."""
    if not 0 <= args.up_to <= 1_000_000:
        raise CeremonyError("--up-to must be 0..1000000")
    with _appliance(args) as appliance:
        found = appliance.address_owner(args.address, args.up_to)
    if found is None:
        raise CeremonyError(
            f"{args.address.strip()} is NOT an address of this station's wallets "
            f"(indexes 0..{args.up_to} of each branch looked at)"
        )
    key = found.our_key
    model = "bip32 seed" if key.account is not None else "hsm key"
    print(f"ours: {found.describe()} · key {key.label} ({model}, {key.state})")
    print(f"  wallet {found.descriptor}")
    return 0


def status_command(args: argparse.Namespace) -> int:
    """Read-only: what the journal says, and every problem that stops the station (also
    while the TUI holds the station open)."""
    with _appliance(args, read_only_beside=True) as appliance:
        journal = appliance.journal
        policy = journal.policy
        audit = journal.audit_key
        report = {
            "appliance": dataclasses.asdict(appliance.config),
            "usable": not appliance.problems,
            "problems": appliance.problems,
            "notes": appliance.notes,
            "keys": [info.to_json() for info in appliance.keystore.key_infos()],
            "audit_key_fingerprint": audit_key_fingerprint(audit) if audit else None,
            "policy_version": policy.version if policy else None,
            "pinned_wallets": list(journal.wallets),
            "journal_length": journal.length,
            "journal_head": journal.head.hex() if journal.seq >= 0 else None,
            "journal_last_time": journal.last_time,
            "station_clock": int(time.time()),
            "pending": len(appliance.state.pending()),
            "open_intents": {str(k): v.get("ceremony") for k, v in journal.intents.items()},
            "backups_overdue": [e.blob.hex() for e in journal.overdue_backups(int(time.time()))],
            "enrolled_tokens": {
                e.token: {
                    "role": e.role,
                    "fingerprint": fp,
                    "algorithm": e.algorithm,
                    **(e.identity or {}),
                }
                for fp, e in journal.enrolled.items()
            },
        }
    print(json.dumps(report, indent=2, default=lambda b: b.hex()))
    return 0 if not report["problems"] else 1


if __name__ == "__main__":
    sys.exit(main())
