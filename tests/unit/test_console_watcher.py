"""The pure helpers of the node daemon's console feed."""

from __future__ import annotations

from pathlib import Path

from pvc_noded.console_watcher import inside, split_complete


def test_split_complete_keeps_the_partial_line_and_counts_only_complete_bytes() -> None:
    lines, partial, consumed = split_complete(b"one\r\n\ntwo\nthr")
    assert (lines, partial, consumed) == (["one", "", "two"], "thr", 10)


def test_split_complete_replaces_bad_bytes_and_waits_for_a_split_character() -> None:
    # A lone 0xff is replaced; the first byte of a two-byte character at the end is not
    # shown until the character is complete (no U+FFFD that would later turn into 'é').
    lines, partial, consumed = split_complete(b"\xffok\nabc\xc3")
    assert (lines, partial, consumed) == (["\ufffdok"], "abc", 4)
    assert split_complete(b"abc\xc3\xa9")[1] == "abc\u00e9"


def test_split_complete_of_nothing_new() -> None:
    assert split_complete(b"") == ([], "", 0)


def test_only_files_inside_the_console_directory_are_read(tmp_path: Path) -> None:
    directory = tmp_path / "console"
    directory.mkdir()
    (tmp_path / "elsewhere").mkdir()
    assert inside(str(directory), str(directory / "web1.log"))
    assert not inside(str(directory), str(directory / ".." / "elsewhere" / "x.log"))
    assert not inside(str(directory), "/etc/shadow")
    link = directory / "sneaky.log"
    link.symlink_to("/etc/hostname")
    assert not inside(str(directory), str(link))  # a link out of it does not count
