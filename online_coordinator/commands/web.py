"""``serve`` (the team's web application) and ``user`` (its accounts), issue 19.

Passwords are read from a prompt (asked twice) or, for scripts, from a file descriptor
(``--password-fd N``): never from the command line or the environment.
"""

from __future__ import annotations

import argparse
import getpass
import importlib.util
import os

from online_coordinator.commands.common import CommandError, add_state, opened
from online_coordinator.users import (
    ROLES,
    add_user,
    check_password,
    revoke_passkeys,
    set_disabled,
    set_password,
)

#: What ``serve`` needs beyond the coordinator itself (the ``web`` extra).
WEB_MODULES = ("starlette", "uvicorn", "argon2", "itsdangerous", "python_multipart", "jinja2")


def register(commands: argparse._SubParsersAction) -> None:
    serve = add_state(commands.add_parser("serve", help="the team's web application"))
    serve.add_argument(
        "--origin",
        required=True,
        help="the address people open, https://HOST[:PORT] behind the TLS proxy "
        "(http://localhost:PORT on one workstation): passkeys are registered for it",
    )
    serve.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="listen port (default 8080)")
    serve.set_defaults(handler=serve_command)

    user = commands.add_parser(
        "user", help="web users: add, disable, enable, reset a password, revoke a passkey"
    )
    sub = user.add_subparsers(dest="user_command", required=True, metavar="ACTION")
    add = add_state(sub.add_parser("add", help="a new user (asks for the password twice)"))
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=ROLES)
    add.add_argument("--password-fd", type=int, help="read the password from this file descriptor")
    add.set_defaults(handler=user_add_command)
    revoke = add_state(sub.add_parser("revoke-passkey", help="revoke a requester's passkey"))
    revoke.add_argument("name")
    revoke.set_defaults(handler=revoke_passkey_command)
    for action, disabled in (("disable", True), ("enable", False)):
        toggle = add_state(sub.add_parser(action, help=f"{action} a user (every session ends)"))
        toggle.add_argument("name")
        toggle.set_defaults(handler=user_toggle_command, disabled=disabled)
    reset = add_state(
        sub.add_parser("password", help="set a new password (asks twice; sessions end)")
    )
    reset.add_argument("name")
    reset.add_argument(
        "--password-fd", type=int, help="read the password from this file descriptor"
    )
    reset.set_defaults(handler=user_password_command)


def require_web() -> None:
    """Say which extra is missing instead of an ImportError's traceback."""
    missing = [name for name in WEB_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise CommandError(
            f"the web application needs the 'web' extra ({', '.join(missing)} missing): "
            "pip install 'coldstation[web]'"
        )


def serve_command(args: argparse.Namespace) -> int:
    require_web()
    import uvicorn

    from online_coordinator.web.app import WebSettings, build_app
    from shared.requester import check_origin

    try:
        origin = check_origin(args.origin)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    with opened(args):  # the configuration and the database open (and migrate) first
        pass
    app = build_app(WebSettings(args.state, origin))
    print(f"serving {origin} on http://{args.host}:{args.port} (Ctrl-C stops)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", server_header=False)
    return 0


def user_add_command(args: argparse.Namespace) -> int:
    require_web()
    password = _password(args.password_fd)
    with opened(args) as (_, store):
        user = add_user(store, args.name, args.role, password)
    print(f"user {user.name} added as {user.role}")
    return 0


def user_toggle_command(args: argparse.Namespace) -> int:
    with opened(args) as (_, store):
        set_disabled(store, args.name, args.disabled)
    print(f"user {args.name} {'disabled: every session ended' if args.disabled else 'enabled'}")
    return 0


def user_password_command(args: argparse.Namespace) -> int:
    require_web()
    password = _password(args.password_fd)
    with opened(args) as (_, store):
        set_password(store, args.name, password)
    print(f"password of {args.name} set: every session ended")
    return 0


def revoke_passkey_command(args: argparse.Namespace) -> int:
    with opened(args) as (_, store):
        count = revoke_passkeys(store, args.name)
    print(
        f"{count} passkey(s) of {args.name} revoked here; on the station, the administrators "
        f"revoke it too: policy draft --revoke-requester {args.name}"
    )
    return 0


def _password(fd: int | None) -> str:
    if fd is not None:
        with os.fdopen(fd, "r", encoding="utf-8", closefd=False) as source:
            return check_password(source.readline().rstrip("\n"))
    first = check_password(getpass.getpass("new password (12 characters or more): "))
    if getpass.getpass("the same password again: ") != first:
        raise CommandError("the two passwords differ: nothing was changed")
    return first
