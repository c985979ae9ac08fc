#!/usr/bin/env python3
"""Delete the networking kernel modules from the image, and every module that needs one.

Usage: kmods.py MODULES_DIR REMOVE_LIST REMOVED_OUT MODPROBE_CONF

MODULES_DIR is /lib/modules/<version> inside the root filesystem. REMOVE_LIST names paths
relative to MODULES_DIR/kernel (a trailing / means a directory). Any module whose
modules.dep entry names a deleted module is deleted too, until nothing changes. Writes
the sorted module names to REMOVED_OUT and "install NAME /bin/false" plus "blacklist
NAME" for each to MODPROBE_CONF (modprobe refuses them even if a copy comes back). The
caller runs depmod afterwards.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

SUFFIX = re.compile(r"\.ko(\.xz|\.zst|\.gz)?$")


def module_name(path: str) -> str:
    return SUFFIX.sub("", path.rsplit("/", 1)[-1]).replace("-", "_")


def main(argv: list[str]) -> int:
    modules_dir, remove_list, removed_out, modprobe_conf = map(Path, argv)
    kernel = modules_dir / "kernel"
    patterns = [line.split("#", 1)[0].strip() for line in remove_list.read_text().splitlines()]
    patterns = [p for p in patterns if p]
    deps: dict[str, list[str]] = {}
    for line in (modules_dir / "modules.dep").read_text().splitlines():
        module, _, needs = line.partition(":")
        deps[module] = needs.split()
    doomed: set[str] = set()
    for pattern in patterns:
        prefix = "kernel/" + pattern
        matched = [
            m
            for m in deps
            if (
                m.startswith(prefix)
                if pattern.endswith("/")
                else SUFFIX.sub("", m) == SUFFIX.sub("", prefix)
            )
        ]
        doomed.update(matched)
    changed = True
    while changed:  # whatever depends on a deleted module goes too
        changed = False
        for module, needs in deps.items():
            if module not in doomed and any(n in doomed for n in needs):
                doomed.add(module)
                changed = True
    for module in doomed:
        (modules_dir / module).unlink(missing_ok=True)
    for pattern in patterns:  # and the directories themselves, with anything left in them
        target = kernel / pattern
        if pattern.endswith("/") and target.is_dir():
            for path in sorted(target.rglob("*"), reverse=True):
                path.unlink() if not path.is_dir() else path.rmdir()
            target.rmdir()
    names = sorted({module_name(m) for m in doomed})
    removed_out.parent.mkdir(parents=True, exist_ok=True)
    removed_out.write_text("".join(f"{n}\n" for n in names))
    modprobe_conf.parent.mkdir(parents=True, exist_ok=True)
    header = (
        "# Coldstation: no networking. These modules were deleted from the image "
        "(image-build/config/remove-modules.txt);\n# if one came back, modprobe still "
        "refuses it.\n"
    )
    modprobe_conf.write_text(
        header + "".join(f"blacklist {n}\ninstall {n} /bin/false\n" for n in names)
    )
    print(f"kmods: removed {len(doomed)} modules ({len(names)} names)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
