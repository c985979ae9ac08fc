"""The cold-station OS image, built for real (marker ``image``: ``make test-image``).

* the manifest lists no networking package and no networking kernel module, and every
  artifact's hash;
* a second build right after the first gives the same root filesystem (tarball and
  squashfs) and the same disk image, byte for byte;
* inside the root filesystem (chroot) the appliance runs: ``--help``, an ``init --demo``
  ceremony on SoftHSM2, and the self-check passes against a fake station with only ``lo``
  and a state directory, and refuses one with a NIC;
* ``verify.sh`` accepts the image and rejects a modified one;
* under ``qemu-system-x86_64`` (software emulation) the image boots from its disk (BIOS,
  SYSLINUX) to the appliance with no NIC, and halts with the self-check's message when a
  PCI NIC and a USB NIC are attached (no driver for either is in the image); through UEFI
  (OVMF, systemd-boot) with no state medium it halts with the self-check's reason.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.image.qemu import boot

pytestmark = pytest.mark.image

REPO = Path(__file__).resolve().parents[2]
VERIFY = REPO / "image-build" / "verify.sh"
NETWORK_PACKAGES = {
    "ifupdown",
    "isc-dhcp-client",
    "isc-dhcp-common",
    "dhcpcd",
    "dhcpcd-base",
    "udhcpc",
    "network-manager",
    "connman",
    "netplan.io",
    "wpasupplicant",
    "iw",
    "wireless-tools",
    "bluez",
    "openssh-client",
    "openssh-server",
    "iproute2",
    "net-tools",
    "iputils-ping",
    "systemd-resolved",
    "systemd-timesyncd",
    "ppp",
    "modemmanager",
    "curl",
    "wget",
    "ca-certificates",
    "apt",
}
OFFICER_PINS = ["1111", "2222", "3333"]
ADMIN_PINS = ["ad11", "ad22"]


@pytest.fixture(scope="session")
def manifest(image_dir) -> dict:
    return json.loads((image_dir / "manifest.json").read_text())


# -- manifest ----------------------------------------------------------------------------------


def test_manifest_lists_no_networking_package(manifest):
    names = {p["name"] for p in manifest["packages"]}
    assert not names & NETWORK_PACKAGES
    assert {
        "linux-image-amd64",
        "python3",
        "softhsm2",
        "opensc",
        "pcscd",
        "libzbar0",
        "live-boot",
        "systemd",
    } <= names
    assert all(p["version"] for p in manifest["packages"])


def test_manifest_lists_no_networking_module(manifest):
    paths = [f["path"] for f in manifest["files"]]
    modules = [p for p in paths if p.startswith("/usr/lib/modules/") and ".ko" in p]
    assert len(modules) > 1000  # the kernel is there, with its other drivers
    for fragment in (
        "/kernel/net/",
        "/kernel/drivers/net/",
        "/kernel/drivers/bluetooth/",
        "/kernel/drivers/nfc/",
        "/kernel/drivers/usb/gadget/",
    ):
        assert not [p for p in modules if fragment in p], fragment
    for name in (
        "e1000",
        "e1000e",
        "virtio_net",
        "r8169",
        "igb",
        "iwlwifi",
        "ath9k",
        "cfg80211",
        "mac80211",
        "bluetooth",
        "btusb",
        "usbnet",
        "cdc_ether",
        "r8152",
        "rndis_host",
        "vsock",
        "ipv6",
        "af_packet",
    ):
        base = {m.rsplit("/", 1)[-1].split(".ko")[0].replace("-", "_") for m in modules}
        assert name not in base, name
    assert {"e1000", "virtio_net", "cfg80211", "bluetooth", "usbnet"} <= set(
        manifest["removed_modules"]
    )
    blacklist = [
        f for f in manifest["files"] if f["path"] == "/etc/modprobe.d/coldstation-airgap.conf"
    ]
    assert blacklist and blacklist[0]["size"] > 10_000


def test_manifest_has_no_network_configuration_or_package_manager(manifest):
    paths = {f["path"] for f in manifest["files"]}
    for absent in (
        "/etc/apt",
        "/var/lib/apt",
        "/var/cache/apt",
        "/usr/bin/apt-get",
        "/etc/ssh",
        "/etc/network",
        "/etc/resolv.conf",
        "/sbin/dhclient",
        "/var/lib/dhcp",
        "/etc/NetworkManager",
        "/etc/wpa_supplicant",
    ):
        assert absent not in paths, absent
    machine_id = [f for f in manifest["files"] if f["path"] == "/etc/machine-id"]
    assert machine_id[0]["size"] == 0
    assert not [p for p in paths if p.startswith("/var/log/") and p != "/var/log"]


def test_manifest_pins_wheels_and_artifacts(image_dir, manifest):
    wheels = {w["name"]: w for w in manifest["python_wheels"]}
    assert "coldstation" in wheels and "textual" in wheels and "python-pkcs11" in wheels
    assert not {"pytest", "hypothesis", "ruff", "py-bitcoinkernel"} & set(wheels)
    for name, artifact in manifest["artifacts"].items():
        path = image_dir / artifact["file"]
        digest = subprocess.run(
            ["sha256sum", str(path)], capture_output=True, text=True, check=True
        ).stdout.split()[0]
        assert digest == artifact["sha256"], name
    assert manifest["rootfs"]["squashfs_sha256"] == manifest["artifacts"]["squashfs"]["sha256"]


# -- reproducibility ----------------------------------------------------------------------


def test_two_builds_give_the_same_image(manifest, second_image_dir):
    other = json.loads((second_image_dir / "manifest.json").read_text())
    if manifest["files"] != other["files"]:
        want = {f["path"]: f for f in manifest["files"]}
        have = {f["path"]: f for f in other["files"]}
        diff = [p for p in sorted(set(want) | set(have)) if want.get(p) != have.get(p)]
        pytest.fail(f"{len(diff)} files differ, e.g. {diff[:20]}")
    assert manifest["rootfs"] == other["rootfs"]
    assert manifest["rootfs"]["tar_sha256"] == other["rootfs"]["tar_sha256"]
    for name in ("squashfs", "initrd", "kernel", "disk_image", "rootfs_tar_zst"):
        assert manifest["artifacts"][name]["sha256"] == other["artifacts"][name]["sha256"], name


# -- the root filesystem (chroot) -------------------------------------------------------------


class Chroot:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.mounts: list[Path] = []

    def bind(self, source: Path, target: str) -> None:
        point = self.root / target.lstrip("/")
        point.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "--bind", str(source), str(point)], check=True)
        self.mounts.append(point)

    def close(self) -> None:
        for point in reversed(self.mounts):
            subprocess.run(["umount", "-l", str(point)], check=False)

    def run(
        self,
        *command: str,
        user: str | None = None,
        stdin: str | None = None,
        extra: tuple[str, ...] = (),
    ) -> subprocess.CompletedProcess:
        env = [
            "env",
            "-i",
            "PATH=/usr/local/bin:/usr/bin:/bin",
            "LANG=C.UTF-8",
            "HOME=/tmp",
            *extra,
        ]
        prefix = ["chroot"] + ([f"--userspec={user}"] if user else []) + [str(self.root)]
        return subprocess.run(
            [*prefix, *env, *command],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )


@pytest.fixture(scope="module")
def chroot(rootfs, tmp_path_factory):
    box = Chroot(rootfs)
    box.bind(Path("/dev"), "/dev")
    box.bind(Path("/proc"), "/proc")
    state = tmp_path_factory.mktemp("state-medium")
    state.chmod(0o755)  # as mkfs.ext4 makes a filesystem's root
    box.bind(state, "/var/lib/coldstation")
    try:
        yield box
    finally:
        box.close()


def test_appliance_help_in_the_root_filesystem(chroot):
    done = chroot.run("coldstation-appliance", "--help", user="coldstation")
    assert done.returncode == 0, done.stderr
    assert "--state" in done.stdout and "init" in done.stdout
    done = chroot.run(
        "/opt/coldstation/bin/python",
        "-c",
        "import cv2, pyzbar.pyzbar, zxingcpp, coincurve, pkcs11, textual; "
        "import appliance.tui.app; print('imports ok')",
    )
    assert done.returncode == 0 and "imports ok" in done.stdout, done.stderr


def test_init_ceremony_on_softhsm_in_the_root_filesystem(chroot):
    state_root = chroot.root / "var/lib/coldstation"
    (state_root / "state").mkdir(exist_ok=True)
    os.chown(state_root / "state", 1000, 1000)
    pins = "".join(f"{p}\n" for p in OFFICER_PINS + ADMIN_PINS)
    done = chroot.run(
        "sh",
        "-c",
        "exec coldstation-appliance --state /var/lib/coldstation/state "
        "--pin-fd 3 init --demo --network regtest 3<&0",
        user="coldstation",
        stdin=pins,
    )
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert set(info["officers"]) == {"officer-1", "officer-2", "officer-3"}
    done = chroot.run(
        "coldstation-appliance",
        "--state",
        "/var/lib/coldstation/state",
        "journal",
        "verify",
        user="coldstation",
    )
    assert done.returncode == 0 and "OK" in done.stdout, done.stdout + done.stderr


def fake_station(base: Path, nic: bool) -> tuple[Path, Path]:
    sys_root, proc = base / "sys", base / "proc"
    (sys_root / "class/net/lo").mkdir(parents=True)
    for slot, klass in (("0000:00:00.0", "0x060000"), ("0000:00:01.1", "0x010180")) + (
        (("0000:00:03.0", "0x020000"),) if nic else ()
    ):
        node = sys_root / "bus/pci/devices" / slot
        node.mkdir(parents=True)
        (node / "class").write_text(klass + "\n")
        (node / "vendor").write_text("0x8086\n")
        (node / "device").write_text("0x100e\n")
    (proc / "self").mkdir(parents=True)
    (proc / "sys/kernel").mkdir(parents=True)
    (proc / "sys/kernel/osrelease").write_text("6.1.0-test\n")
    (proc / "modules").write_text("")
    (proc / "self/mountinfo").write_text(
        "40 1 254:16 / /var/lib/coldstation rw,nosuid,nodev,noexec shared:9 - ext4 /dev/vdb rw\n"
    )
    return sys_root, proc


def test_selfcheck_in_the_root_filesystem(chroot):
    for nic in (False, True):
        base = chroot.root / "tmp" / f"station-{'nic' if nic else 'clean'}"
        fake_station(base, nic)
        done = chroot.run(
            "/usr/lib/coldstation/selfcheck",
            "--sys",
            f"/tmp/{base.name}/sys",
            "--proc",
            f"/tmp/{base.name}/proc",
        )
        if not nic:
            assert done.returncode == 0, done.stdout + done.stderr
            assert done.stdout.splitlines()[-1] == "coldstation self-check: OK"
            assert "PKCS#11 module /usr/lib/softhsm/libsofthsm2.so sha256" in done.stdout
            assert "modules removed from the image" in done.stdout
        else:
            assert done.returncode == 1
            assert "unexpected device class: PCI 0000:00:03.0 class 0x020000" in done.stdout
        shutil.rmtree(base)


# -- verify.sh ----------------------------------------------------------------------------


def test_verify_accepts_the_image_and_rejects_a_modified_one(image_dir, tmp_path):
    done = subprocess.run(
        ["bash", str(VERIFY), str(image_dir / "coldstation.img"), str(image_dir / "manifest.json")],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "MATCHES" in done.stdout
    tampered = tmp_path / "tampered.squashfs"
    shutil.copyfile(image_dir / "filesystem.squashfs", tampered)
    with tampered.open("r+b") as handle:  # flip a byte in the middle of the data
        handle.seek(tampered.stat().st_size // 2)
        byte = handle.read(1)
        handle.seek(-1, 1)
        handle.write(bytes([byte[0] ^ 0xFF]))
    done = subprocess.run(
        ["bash", str(VERIFY), str(tampered), str(image_dir / "manifest.json")],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert done.returncode != 0
    assert "DOES NOT MATCH" in done.stdout


# -- boot under qemu ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def initialised_state(rootfs, tmp_path_factory) -> Path:
    """A COLDSTATE ext4 disk holding an appliance initialised with SoftHSM2 tokens (by the
    image's own appliance, in a chroot), so the boot reaches the appliance's home screen."""
    base = tmp_path_factory.mktemp("state-disk")
    medium = base / "medium"
    (medium / "state").mkdir(parents=True)
    medium.chmod(0o755)  # as mkfs.ext4 makes a filesystem's root
    os.chown(medium / "state", 1000, 1000)
    box = Chroot(rootfs)
    try:
        box.bind(Path("/dev"), "/dev")
        box.bind(Path("/proc"), "/proc")
        box.bind(medium, "/var/lib/coldstation")
        pins = "".join(f"{p}\n" for p in OFFICER_PINS + ADMIN_PINS)
        done = box.run(
            "sh",
            "-c",
            "exec coldstation-appliance --state "
            "/var/lib/coldstation/state --pin-fd 3 init --demo --network regtest 3<&0",
            user="coldstation",
            stdin=pins,
        )
        assert done.returncode == 0, done.stderr
    finally:
        box.close()
    image = base / "state.img"
    subprocess.run(
        ["mkfs.ext4", "-q", "-L", "COLDSTATE", "-d", str(medium), str(image), "256M"], check=True
    )
    return image


def test_boot_reaches_the_appliance_without_a_nic(
    image_dir, initialised_state, tmp_path, image_timings
):
    result = boot(image_dir / "coldstation.img", initialised_state, tmp_path, nics=())
    image_timings["boot without NIC, to the appliance's home screen"] = result.seconds
    (image_dir / "boot-no-nic.log").write_text(result.output + f"\n\nevents: {result.events}\n")
    assert "coldstation self-check: OK" in result.output, result.tail()
    assert "network interfaces: lo" in result.output
    assert "coldstation: starting the appliance" in result.output, result.tail()
    assert result.reached, result.tail()
    assert "FAILED" not in result.output


def test_boot_halts_with_a_nic_attached(image_dir, initialised_state, tmp_path, image_timings):
    result = boot(
        image_dir / "coldstation.img", initialised_state, tmp_path, nics=("e1000", "usb-net")
    )
    image_timings["boot with e1000 + USB NIC, to the halt"] = result.seconds
    (image_dir / "boot-with-nic.log").write_text(result.output + f"\n\nevents: {result.events}\n")
    assert "coldstation self-check: FAILED" in result.output, result.tail()
    assert "unexpected device class: PCI" in result.output
    assert "class 0x020000 (network controller)" in result.output
    assert "interface class 0x02 (CDC communications" in result.output
    assert "The station is halted" in result.output
    assert "System halted" in result.output, result.tail()
    assert "coldstation: starting the appliance" not in result.output


def test_uefi_boot_without_the_state_medium_refuses_and_halts(image_dir, tmp_path, image_timings):
    """Through the other boot path (OVMF, systemd-boot), with no COLDSTATE disk."""
    result = boot(image_dir / "coldstation.img", None, tmp_path, uefi=True)
    image_timings["UEFI boot without the state medium, to the halt"] = result.seconds
    (image_dir / "boot-no-state.log").write_text(result.output + f"\n\nevents: {result.events}\n")
    assert "no state medium: nothing is mounted at /var/lib/coldstation" in result.output, (
        result.tail()
    )
    assert "coldstation self-check: FAILED" in result.output
    assert "System halted" in result.output
    assert "coldstation: starting the appliance" not in result.output
