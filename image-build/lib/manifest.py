#!/usr/bin/env python3
"""The image manifest: what is in the image, and the check of an image against it.

``normalise ROOT``
    Make build-time facts deterministic inside the root filesystem: the "last password
    change" day in /etc/shadow becomes SOURCE_DATE_EPOCH's day.

``build --root ROOT --out manifest.json ...``
    Write the manifest (see docs/image.md): build parameters, Debian packages with
    versions, boot-loader packages, Python wheels with hashes, the kernel modules removed,
    every file of the root filesystem (type, mode, owner, size, sha256 or link target)
    and the artifacts' hashes.

``tree ROOT MANIFEST`` (used by verify.sh)
    Compare an unpacked root filesystem with the manifest's file list; print each
    difference; exit 1 if there is any. With ``--no-owner`` ownership is not compared
    (an unprivileged unsquashfs cannot keep it).

``listing LISTING MANIFEST`` (used by verify.sh)
    Compare ``unsquashfs -lln`` output (type, mode, uid/gid, size, link target per path)
    with the manifest.

``get MANIFEST KEY...``  print a value, e.g. ``get manifest.json artifacts disk_image sha256``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

FORMAT = "coldstation-image-manifest/1"


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, streamed; the one file hasher of the image build."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


# -- normalise ------------------------------------------------------------------------------


def normalise(root: Path) -> None:
    day = str(int(os.environ["SOURCE_DATE_EPOCH"]) // 86400)
    for name in ("etc/shadow", "etc/gshadow"):
        path = root / name
        if not path.is_file() or name.endswith("gshadow"):
            continue
        lines = []
        for line in path.read_text().splitlines():
            fields = line.split(":")
            if len(fields) > 2 and fields[2]:
                fields[2] = day
            lines.append(":".join(fields))
        mode = path.stat().st_mode
        path.write_text("\n".join(lines) + "\n")
        os.chmod(path, stat.S_IMODE(mode))


# -- file list --------------------------------------------------------------------------------


def entry(root: Path, path: Path, owner: bool = True) -> dict:
    info = os.lstat(path)
    rel = "/" + str(path.relative_to(root)) if path != root else "/"
    item: dict = {"path": rel, "mode": f"{stat.S_IMODE(info.st_mode):04o}"}
    if owner:
        item["uid"], item["gid"] = info.st_uid, info.st_gid
    if stat.S_ISLNK(info.st_mode):
        item["type"], item["target"] = "link", os.readlink(path)
    elif stat.S_ISDIR(info.st_mode):
        item["type"] = "dir"
    elif stat.S_ISREG(info.st_mode):
        item["type"], item["size"], item["sha256"] = "file", info.st_size, sha256_file(path)
    elif stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode):
        item["type"] = "char" if stat.S_ISCHR(info.st_mode) else "block"
        item["device"] = f"{os.major(info.st_rdev)},{os.minor(info.st_rdev)}"
    elif stat.S_ISFIFO(info.st_mode):
        item["type"] = "fifo"
    else:
        item["type"] = "socket"
    return item


def walk(root: Path, owner: bool = True) -> list[dict]:
    items = [entry(root, root, owner)]
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            items.append(entry(root, Path(dirpath) / name, owner))
    items.sort(key=lambda item: item["path"].encode())
    return items


# -- build ---------------------------------------------------------------------------------


def parse_requirements(path: Path) -> list[dict]:
    text = path.read_text().replace("\\\n", " ")
    wheels = []
    for line in text.splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==(\S+)\s+--hash=sha256:([0-9a-f]{64})", line)
        if match:
            wheels.append({"name": match[1], "version": match[2], "sha256": match[3]})
    return wheels


def build(args: argparse.Namespace) -> None:
    root = Path(args.root)
    packages = []
    for line in Path(args.packages).read_text().splitlines():
        name, version, arch = line.split("\t")
        packages.append({"name": name, "version": version, "arch": arch})
    boot_packages = []
    for deb in sorted(Path(args.boot_packages).glob("*.deb")):
        fields = subprocess.run(
            ["dpkg-deb", "-f", str(deb), "Package", "Version"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        values = dict(line.split(": ", 1) for line in fields.splitlines() if ": " in line)
        boot_packages.append(
            {"name": values["Package"], "version": values["Version"], "sha256": sha256_file(deb)}
        )
    files = walk(root)
    file_list = json.dumps(files, sort_keys=True, separators=(",", ":")).encode()
    meta = dict(item.split("=", 1) for item in args.meta)
    meta["source_date_epoch"] = int(meta["source_date_epoch"])
    artifacts = {}
    for item in args.artifact:
        name, path = item.split("=", 1)
        artifacts[name] = {
            "file": Path(path).name,
            "size": Path(path).stat().st_size,
            "sha256": sha256_file(Path(path)),
        }
    manifest = {
        "format": FORMAT,
        "build": meta,
        "kernel_version": args.kernel_version,
        "rootfs": {
            "tar_sha256": args.rootfs_tar_sha256,
            "squashfs_sha256": artifacts.get("squashfs", {}).get("sha256"),
            "files_sha256": hashlib.sha256(file_list).hexdigest(),
            "file_count": len(files),
            "size": sum(f.get("size", 0) for f in files),
        },
        "artifacts": artifacts,
        "packages": packages,
        "boot_packages": boot_packages,
        "boot_files": json.loads(Path(args.boot_files).read_text()) if args.boot_files else {},
        "python_wheels": parse_requirements(Path(args.requirements)),
        "removed_modules": Path(args.removed_modules).read_text().split(),
        "files": files,
    }
    Path(args.out).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    print(
        f"manifest: {len(packages)} packages, {len(files)} files, "
        f"{len(manifest['removed_modules'])} removed modules"
    )


# -- verification ---------------------------------------------------------------------------


def compare(expected: list[dict], actual: list[dict], keys: tuple[str, ...]) -> list[str]:
    want = {item["path"]: item for item in expected}
    have = {item["path"]: item for item in actual}
    problems = []
    for path in sorted(set(want) - set(have)):
        problems.append(f"missing: {path}")
    for path in sorted(set(have) - set(want)):
        problems.append(f"added:   {path} ({have[path]['type']})")
    for path in sorted(set(want) & set(have)):
        for key in keys:
            if want[path].get(key) != have[path].get(key):
                problems.append(
                    f"changed: {path}: {key} {want[path].get(key)!r} -> {have[path].get(key)!r}"
                )
    return problems


def tree(args: argparse.Namespace) -> int:
    manifest = json.loads(Path(args.manifest).read_text())
    actual = walk(Path(args.root), owner=not args.no_owner)
    keys = ("type", "size", "sha256", "target")
    if not args.no_owner:
        keys += ("mode", "uid", "gid", "device")
    skip = {"char", "block", "fifo", "socket"} if args.no_owner else set()
    expected = [f for f in manifest["files"] if f["type"] not in skip]
    problems = compare(expected, actual, keys)
    for problem in problems:
        print(problem)
    print(f"files: {len(expected)} in the manifest, {len(problems)} difference(s)")
    return 1 if problems else 0


LISTING = re.compile(r"^(\S)(\S{9})\s+(\d+)/(\d+)\s+(\d+|\d+,\s*\d+)\s+\S+\s+\S+\s+(.*)$")


def listing(args: argparse.Namespace) -> int:
    """``unsquashfs -lln``: ``drwxr-xr-x 0/0 123 2024-01-01 00:00 squashfs-root/etc``."""
    manifest = json.loads(Path(args.manifest).read_text())
    types = {
        "d": "dir",
        "-": "file",
        "l": "link",
        "c": "char",
        "b": "block",
        "p": "fifo",
        "s": "socket",
    }
    actual = []
    for line in Path(args.listing).read_text().splitlines():
        match = LISTING.match(line)
        if not match:
            continue
        kind, perms, uid, gid, size, rest = match.groups()
        path, _, target = rest.partition(" -> ")
        path = path.removeprefix("squashfs-root") or "/"
        item = {
            "path": path,
            "type": types[kind],
            "uid": int(uid),
            "gid": int(gid),
            "mode": f"{mode_bits(perms):04o}",
        }
        if kind == "l":
            item["target"] = target
        if kind == "-":
            item["size"] = int(size)
        if kind in "cb":
            item["device"] = size.replace(" ", "")
        actual.append(item)
    problems = compare(
        manifest["files"], actual, ("type", "mode", "uid", "gid", "size", "target", "device")
    )
    for problem in problems:
        print(problem)
    print(f"metadata: {len(actual)} entries listed, {len(problems)} difference(s)")
    return 1 if problems else 0


def mode_bits(perms: str) -> int:
    bits = 0
    for index, char in enumerate(perms):
        shift = 8 - index
        if char not in "-STl":
            bits |= 1 << shift
    if perms[2] in "sS":
        bits |= 0o4000
    if perms[5] in "sSl":
        bits |= 0o2000
    if perms[8] in "tT":
        bits |= 0o1000
    return bits


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("normalise").add_argument("root")
    b = sub.add_parser("build")
    for name in (
        "root",
        "out",
        "packages",
        "boot_packages",
        "requirements",
        "removed_modules",
        "rootfs_tar_sha256",
        "kernel_version",
    ):
        b.add_argument("--" + name.replace("_", "-"), dest=name, required=True)
    b.add_argument("--boot-files", help="JSON: every boot partition file's sha256")
    b.add_argument("--artifact", action="append", default=[])
    b.add_argument("--meta", action="append", default=[])
    t = sub.add_parser("tree")
    t.add_argument("root")
    t.add_argument("manifest")
    t.add_argument("--no-owner", action="store_true")
    s = sub.add_parser("listing")
    s.add_argument("listing")
    s.add_argument("manifest")
    g = sub.add_parser("get")
    g.add_argument("manifest")
    g.add_argument("keys", nargs="+")
    args = parser.parse_args(argv)
    if args.command == "normalise":
        normalise(Path(args.root))
    elif args.command == "build":
        build(args)
    elif args.command == "tree":
        return tree(args)
    elif args.command == "listing":
        return listing(args)
    elif args.command == "get":
        value = json.loads(Path(args.manifest).read_text())
        for key in args.keys:
            value = value[int(key)] if isinstance(value, list) else value[key]
        print(value if not isinstance(value, (dict, list)) else json.dumps(value, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
