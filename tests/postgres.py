"""A throwaway PostgreSQL server for the store tests: Debian's ``postgresql`` binaries,
a cluster in a temporary folder, a Unix socket there, trust authentication (this server
lives for one test session and listens on no TCP port). As root (CI), the server runs as
the ``postgres`` user the package creates. Tests that need it skip, saying why, where the
binaries are missing (``make test`` installs them: the Makefile's APT_PACKAGES)."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


def _bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def require_postgres() -> tuple[str, str]:
    initdb, pg_ctl = _bin("initdb"), _bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("PostgreSQL tests need Debian's postgresql (initdb, pg_ctl)")
    return initdb, pg_ctl


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """A running server; yields the libpq URL of its ``postgres`` database. Its folder is
    a new one in the system's temporary directory (the ``postgres`` user cannot enter
    pytest's, which are private to root), removed afterwards."""
    initdb, pg_ctl = require_postgres()
    folder = Path(tempfile.mkdtemp(prefix="coldstation-pg-"))
    data, sockets = folder / "data", folder / "run"
    sockets.mkdir(exist_ok=True)
    prefix: list[str] = []
    user = pwd.getpwuid(os.getuid()).pw_name
    if os.getuid() == 0:  # postgres refuses to run as root
        postgres = pwd.getpwnam("postgres")
        for path in (folder, sockets):
            os.chown(path, postgres.pw_uid, postgres.pw_gid)
        prefix, user = ["runuser", "-u", "postgres", "--"], "postgres"
    run = lambda *args: subprocess.run(  # noqa: E731
        [*prefix, *args], check=True, capture_output=True, text=True
    )
    run(initdb, "-D", str(data), "--auth=trust", "-U", user, "--no-sync", "-E", "UTF8")
    options = f"-k {sockets} -c listen_addresses='' -c fsync=off -c max_connections=40"
    run(pg_ctl, "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w", "start")
    try:
        yield f"postgresql://{user}@/postgres?host={sockets}"
    finally:
        run(pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)


def fresh_database(url: str, name: str) -> str:
    """A new, empty database on the server at ``url``; its URL."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
        connection.execute(f'CREATE DATABASE "{name}"')
    return url.replace("@/postgres?", f"@/{name}?")
