"""appliance.journal_store: framing, damage reported (never cut), the recovery cut, checkpoint
starts, crash safety."""

from __future__ import annotations

import importlib.util
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from appliance.journal_store import (
    HEADER_SIZE,
    MAX_PAYLOAD,
    OVERHEAD,
    JournalStore,
    JournalStoreError,
    encode_frame,
    journal_append_rate,
)

WRITER = Path(__file__).with_name("journal_writer.py")


def _load_writer():
    """journal_writer as a module, however tests/ is laid out (package or not)."""
    spec = importlib.util.spec_from_file_location("coldstation_journal_writer", WRITER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


record_payload = _load_writer().record_payload


def _write(path: Path, payloads: list[bytes]) -> None:
    store, report = JournalStore.open(path)
    with store:
        assert report.clean
        for payload in payloads:
            store.append(payload)


PAYLOADS = [b"genesis", b"", b"\x00" * 100, bytes(range(256)), b"last record"]


def test_round_trip(tmp_path):
    path = tmp_path / "journal"
    store, report = JournalStore.open(path)
    with store:
        assert report.clean and report.frames == 0
        assert len(store) == 0 and store.last() is None
        for i, payload in enumerate(PAYLOADS):
            assert store.append(payload) == i
        assert store.entries() == PAYLOADS
        assert store.last() == PAYLOADS[-1]
        assert store.entry(-2) == PAYLOADS[-2]
    assert path.stat().st_size == sum(len(p) + OVERHEAD for p in PAYLOADS)
    store, report = JournalStore.open(path)
    with store:
        assert report.clean and report.frames == len(PAYLOADS)
        assert store.entries() == PAYLOADS
        assert store.append(b"more") == len(PAYLOADS)
    assert os.stat(path).st_mode & 0o777 == 0o600


def test_frame_layout(tmp_path):
    frame = encode_frame(b"abc")
    assert frame[:4] == b"CSJ1"
    assert frame[4:8] == (3).to_bytes(4, "big")
    assert frame[8:11] == b"abc"
    import zlib

    assert frame[11:] == zlib.crc32(frame[4:11]).to_bytes(4, "big")


def test_payload_cap(tmp_path):
    store, _ = JournalStore.open(tmp_path / "journal")
    with store:
        store.append(bytes(MAX_PAYLOAD))
        with pytest.raises(JournalStoreError, match="exceeds"):
            store.append(bytes(MAX_PAYLOAD + 1))
        with pytest.raises(TypeError):
            store.append("text")  # type: ignore[arg-type]
        assert len(store) == 1


def test_exclusive_lock(tmp_path):
    path = tmp_path / "journal"
    store, _ = JournalStore.open(path)
    with store:
        with pytest.raises(JournalStoreError, match="locked by another writer"):
            JournalStore.open(path)
        code = (
            "import sys\nfrom appliance.journal_store import JournalStore, JournalStoreError\n"
            "try:\n    JournalStore.open(sys.argv[1])\nexcept JournalStoreError:\n"
            "    sys.exit(3)\n"
        )
        child = subprocess.run([sys.executable, "-c", code, str(path)], check=False)
        assert child.returncode == 3
    store, _ = JournalStore.open(path)  # released on close
    store.close()


def _torn_cases():
    """Every proper prefix of the last frame, plus a bad CRC and zeros after the frames."""
    last = encode_frame(PAYLOADS[-1])
    for keep in range(1, len(last)):
        yield f"prefix-{keep}", last[:keep]
    bad_crc = bytearray(last)
    bad_crc[-1] ^= 0x01
    yield "bad-crc", bytes(bad_crc)
    bad_payload = bytearray(last)
    bad_payload[HEADER_SIZE] ^= 0x80
    yield "bad-payload", bytes(bad_payload)
    yield "zeros", bytes(4096)


@pytest.mark.parametrize(("name", "tail"), list(_torn_cases()), ids=lambda v: v)
def test_a_damaged_tail_is_reported_and_stops_appends_until_cut(tmp_path, name, tail):
    path = tmp_path / "journal"
    kept = PAYLOADS[:-1]
    _write(path, kept)
    good_size = path.stat().st_size
    with open(path, "ab") as handle:
        handle.write(tail)

    store, report = JournalStore.open(path)
    with store:
        assert report.damage is not None and not report.clean, name
        assert report.damage.offset == good_size and report.damage.length == len(tail)
        assert report.damage.frame == len(kept) and not report.damage.followed_by_valid_frames
        assert path.stat().st_size == good_size + len(tail), "nothing is cut on open"
        assert store.entries() == kept
        with pytest.raises(JournalStoreError, match="journal recover"):
            store.append(b"more")
        quarantine = store.cut_tail(len(store))  # what the recovery ceremony does
        assert quarantine == tmp_path / "journal.torn-1"
        assert quarantine.read_bytes() == tail
        assert path.stat().st_size == good_size
        assert store.append(b"after recovery") == len(kept)

    store, report = JournalStore.open(path)
    with store:
        assert report.clean
        assert store.entries() == [*kept, b"after recovery"]


def test_each_cut_gets_its_own_quarantine_file(tmp_path):
    path = tmp_path / "journal"
    _write(path, PAYLOADS)
    for n in (1, 2):
        with open(path, "ab") as handle:
            handle.write(encode_frame(b"torn %d" % n)[:-2])
        store, report = JournalStore.open(path)
        with store:
            assert report.damage is not None
            assert store.cut_tail(len(store)).name == f"journal.torn-{n}"
    assert len(list(tmp_path.glob("journal.torn-*"))) == 2


def test_cut_tail_can_drop_valid_frames_that_failed_verification(tmp_path):
    """A frame whose CRC holds but whose record does not verify is cut from its index."""
    path = tmp_path / "journal"
    _write(path, PAYLOADS)
    store, _ = JournalStore.open(path)
    with store:
        quarantine = store.cut_tail(3)
        assert store.entries() == PAYLOADS[:3]
        assert quarantine.read_bytes() == b"".join(encode_frame(p) for p in PAYLOADS[3:])


def _offsets(payloads):
    offsets, at = [], 0
    for payload in payloads:
        offsets.append(at)
        at += len(payload) + OVERHEAD
    return offsets


@pytest.mark.parametrize(
    ("what", "delta"),
    [("magic", 0), ("length", 4), ("payload", HEADER_SIZE + 2), ("crc", -1)],
)
@pytest.mark.parametrize("frame", [0, 1, 3])
def test_corruption_before_the_last_frame_is_refused(tmp_path, what, delta, frame):
    path = tmp_path / "journal"
    _write(path, PAYLOADS)
    offsets = _offsets(PAYLOADS)
    data = bytearray(path.read_bytes())
    if delta >= 0:
        at = offsets[frame] + delta
    else:
        at = offsets[frame] + len(PAYLOADS[frame]) + OVERHEAD + delta
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))

    store, report = JournalStore.open(path)
    with store:
        assert report.damage is not None and report.damage.followed_by_valid_frames
        assert report.damage.frame == frame and report.damage.offset == offsets[frame]
        assert f"frame {frame} at offset {offsets[frame]}" in str(report.damage)
        with pytest.raises(JournalStoreError, match="restore the file from a copy"):
            store.cut_tail(frame)
        with pytest.raises(JournalStoreError):
            store.append(b"x")
    assert path.read_bytes() == bytes(data), "a corrupt journal must never be truncated"
    assert not list(tmp_path.glob("journal.torn-*"))


def test_corruption_followed_by_torn_tail_is_still_corruption(tmp_path):
    path = tmp_path / "journal"
    _write(path, PAYLOADS)
    data = bytearray(path.read_bytes())
    data[HEADER_SIZE] ^= 0x01  # damage frame 0
    data += encode_frame(b"torn")[:5]
    path.write_bytes(bytes(data))
    store, report = JournalStore.open(path)
    store.close()
    assert report.damage.frame == 0 and report.damage.followed_by_valid_frames
    assert path.read_bytes() == bytes(data)


def test_open_from_a_checkpoint_reads_only_what_follows(tmp_path):
    path = tmp_path / "journal"
    _write(path, PAYLOADS)
    offset = sum(len(p) + OVERHEAD for p in PAYLOADS[:3])
    store, _ = JournalStore.open(path)
    with store:
        start = store.start_at(2)
    assert start.offset == offset and start.index == 3
    store, report = JournalStore.open(path, start)
    with store:
        assert report.clean and len(store) == len(PAYLOADS)
        assert store.entry(4) == PAYLOADS[4]
        assert store.entry(1) == PAYLOADS[1]  # frames before the checkpoint, found on demand
        assert store.frame_end(2) == offset


def _flip_with_crc(data: bytearray, frame_offset: int, length: int) -> None:
    """One bit in a frame's payload, its CRC fixed up as an insider would."""
    import zlib

    data[frame_offset + HEADER_SIZE + 1] ^= 0x01
    body = bytes(data[frame_offset + 4 : frame_offset + HEADER_SIZE + length])
    data[frame_offset + HEADER_SIZE + length : frame_offset + OVERHEAD + length] = zlib.crc32(
        body
    ).to_bytes(4, "big")


def test_a_changed_checkpoint_frame_or_a_shorter_file_is_reported_and_everything_rescanned(
    tmp_path,
):
    path = tmp_path / "journal"
    _write(path, PAYLOADS)
    store, _ = JournalStore.open(path)
    with store:
        start = store.start_at(2)
    data = bytearray(path.read_bytes())
    _flip_with_crc(data, start.last_offset, len(PAYLOADS[2]))
    path.write_bytes(bytes(data))
    store, report = JournalStore.open(path, start)
    with store:
        assert report.prefix_changed and not report.clean
        assert len(store) == len(PAYLOADS) and store.entry(2) != PAYLOADS[2]
    _write(path2 := tmp_path / "short", PAYLOADS[:2])  # the file ends before the checkpoint
    store, report = JournalStore.open(path2, start)
    store.close()
    assert report.prefix_changed


def test_bytes_before_the_checkpoint_frame_are_not_read_on_open(tmp_path):
    """The cost of opening does not grow with the journal: an edit before the checkpoint's
    last frame is left to `journal verify`, the export and the audit (the station's
    decisions come from the checkpoint's signed state, not from those bytes)."""
    path = tmp_path / "journal"
    _write(path, PAYLOADS)
    store, _ = JournalStore.open(path)
    with store:
        start = store.start_at(2)
    data = bytearray(path.read_bytes())
    _flip_with_crc(data, 0, len(PAYLOADS[0]))
    path.write_bytes(bytes(data))
    store, report = JournalStore.open(path, start)
    with store:
        assert report.clean
        assert store.entry(0) != PAYLOADS[0]  # what `journal verify` then finds


def test_entry_rechecks_crc(tmp_path):
    path = tmp_path / "journal"
    store, _ = JournalStore.open(path)
    with store:
        for payload in PAYLOADS:
            store.append(payload)
        with open(path, "r+b") as handle:  # someone ignores the advisory lock
            handle.seek(HEADER_SIZE)
            handle.write(b"X")
        with pytest.raises(JournalStoreError, match="frame 0 at offset 0"):
            store.entry(0)


def test_sigkill_never_loses_an_acknowledged_record(tmp_path):
    """100 writers killed at random moments; every acknowledged record survives intact."""
    path = tmp_path / "journal"
    rng = random.Random(23576)
    acknowledged = -1
    checked = 0
    torn_reports = 0
    deadline = time.monotonic() + 60
    for run in range(100):
        child = subprocess.Popen(
            [sys.executable, str(WRITER), str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            ready = child.stdout.readline()
            assert ready.startswith(b"ready "), child.stderr.read().decode(errors="replace")
            time.sleep(rng.uniform(0.005, 0.05))
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
        output = child.stdout.read()
        child.stdout.close()
        child.stderr.close()
        lines = output.split(b"\n")[:-1]  # a final line without newline is not an ack
        if lines:
            assert [int(x) for x in lines] == list(range(int(lines[0]), int(lines[-1]) + 1))
            acknowledged = max(acknowledged, int(lines[-1]))

        store, report = JournalStore.open(path)
        with store:
            if report.damage is not None:  # a torn append: the recovery cut, as admins would
                assert not report.damage.followed_by_valid_frames
                torn_reports += 1
                store.cut_tail(len(store))
            assert len(store) > acknowledged, f"run {run}: acknowledged record lost"
            for index in range(checked, len(store)):
                assert store.entry(index) == record_payload(index), f"record {index} damaged"
            checked = len(store)
        assert time.monotonic() < deadline, "SIGKILL test too slow"

    assert acknowledged > 100, "writers barely ran; the test proved nothing"
    store, _ = JournalStore.open(path)
    with store:
        assert all(e == record_payload(i) for i, e in enumerate(store.entries()))
    print(
        f"\nSIGKILL: 100 kills, {checked} records, {acknowledged + 1} acknowledged, "
        f"{torn_reports} torn tail(s) reported"
    )


def test_append_rate_is_measured(tmp_path):
    rate = journal_append_rate(tmp_path / "bench-journal", n=300)
    print(f"\njournal appends with fsync: {rate:.0f}/s")
    assert rate > 0
    assert not (tmp_path / "bench-journal").exists()
