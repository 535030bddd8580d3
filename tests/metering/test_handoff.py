"""Large results handed from range workers to their parent by file: every byte back, no file left behind."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

import pytest

from proxy.metering.handoff import HandedOff, HandoffFolder, discard, hand_off, take
from proxy.metering.ranges import ByteRange, RangeMeter, results_in_order
from proxy.providers.base import OutputObject


@pytest.fixture()
def folder() -> Iterator[HandoffFolder]:
    made = HandoffFolder()
    yield made
    made.close()


def test_the_parts_come_back_byte_for_byte_and_the_file_goes(folder: HandoffFolder) -> None:
    parts = [b"\x00\x01" * 70_000, b"", b"line\n" * 3, os.urandom(3 * 1024 * 1024 + 7)]
    handed = hand_off(folder.path(), parts)
    assert handed.path is not None and handed.inline == ()
    assert handed.sizes == (140_000, 0, 15, 3 * 1024 * 1024 + 7)
    assert os.path.getsize(handed.path) == sum(handed.sizes)
    assert take(handed) == parts
    assert not os.path.exists(handed.path)


def test_a_part_given_in_pieces_comes_back_whole(folder: HandoffFolder) -> None:
    handed = hand_off(folder.path(), [b"ab", [b"cd", b"", b"efg"], []])
    assert handed.sizes == (2, 5, 0)
    assert take(handed) == [b"ab", b"cdefg", b""]
    inline = hand_off(folder.path() + "/gone", [b"ab", [b"cd", b"efg"]])
    assert inline.path is None and take(inline) == [b"ab", b"cdefg"]


def test_the_folder_is_the_users_own_and_in_memory_where_there_is_shared_memory(folder: HandoffFolder) -> None:
    path = Path(folder.path())
    assert stat.S_IMODE(path.stat().st_mode) == 0o700
    if os.access("/dev/shm", os.W_OK):
        assert path.parent == Path("/dev/shm")
    assert folder.path() == str(path)  # made once
    (path / "left").write_bytes(b"x")
    folder.close()
    assert not path.exists()
    assert Path(folder.path()) != path and Path(folder.path()).is_dir()  # a new one after close


def test_a_result_that_cannot_be_written_travels_inline(tmp_path: Path) -> None:
    handed = hand_off(str(tmp_path / "gone"), [b"abc", b"", b"de"])
    assert handed == HandedOff(None, (3, 0, 2), (b"abc", b"", b"de"))
    assert take(handed) == [b"abc", b"", b"de"]
    discard(handed)  # nothing to remove


def test_a_discarded_result_is_removed_unread(folder: HandoffFolder) -> None:
    handed = hand_off(folder.path(), [b"abc"])
    assert handed.path is not None
    discard(handed)
    discard(handed)  # twice (a late callback and the reader's cleanup may both come): no error
    assert os.listdir(folder.path()) == []


def _slow_hand_off(folder: str, size: int, delay: float) -> HandedOff:
    time.sleep(delay)
    return hand_off(folder, [b"r" * size])


@pytest.mark.slow  # worker processes
def test_results_under_way_when_the_reader_stops_are_removed_when_they_come() -> None:
    ranges = RangeMeter(processes=2)
    pool = ranges.executor()
    assert pool is not None
    folder = ranges.handoff.path()
    obj = OutputObject("b", "o", 1, 10)
    planned = [ByteRange(obj, at, at + 1) for at in range(10)]

    def submit(byte_range: ByteRange) -> Future[HandedOff]:
        return pool.submit(_slow_hand_off, folder, 1000 + byte_range.start, 0.3)

    try:
        results = results_in_order(ranges, planned, submit, ahead_per_process=2, what="a test", discard=discard)
        first = next(results)
        assert take(first) == [b"r" * 1000]
        results.close()  # the reader stops: three ranges are under way (two running, one done or queued)
        deadline = time.monotonic() + 10
        while os.listdir(folder) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert os.listdir(folder) == []
        time.sleep(0.5)  # and no late one appears
        assert os.listdir(folder) == []
    finally:
        ranges.close()
    assert not os.path.exists(folder)
