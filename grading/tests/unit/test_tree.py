"""isolation/tree.py: folders that student code wrote, walked and removed from the grader's side through descriptors:
no link is followed and no depth stops it. Another file system left alone, and a folder its owner locked unlocked
first, in namespaces of their own: test_tree_in_namespaces.py."""
import os
from pathlib import Path

import pytest

from grading.isolation import tree
from hostile_trees import chain, hostile_tree, outside  # noqa: F401 (outside is a fixture)


def test_a_tree_of_any_depth_goes_and_nothing_it_points_at(tmp_path: Path, outside: tuple[Path, Path]) -> None:
    root = tmp_path / "work"
    hostile_tree(root, outside)
    tree.remove(root)
    assert not root.exists()
    assert outside[1].read_text() == "the host's" and sorted(p.name for p in outside[0].iterdir()) == ["keep.txt"]


def test_a_link_or_a_missing_path_is_fine_to_remove(tmp_path: Path, outside: tuple[Path, Path]) -> None:
    (tmp_path / "link").symlink_to(outside[0])
    tree.remove(tmp_path / "link")
    tree.remove(tmp_path / "never-made")
    assert not os.path.lexists(tmp_path / "link") and outside[1].is_file()


def test_measuring_stops_at_the_depth_it_may_hold_and_follows_no_link(tmp_path: Path,
                                                                      outside: tuple[Path, Path]) -> None:
    deep, shallow = tmp_path / "deep", tmp_path / "shallow"
    hostile_tree(deep, outside)
    shallow.mkdir()
    os.close(chain(shallow, 10))
    (shallow / "small.bin").write_bytes(bytes(8192))
    (shallow / "to-host").symlink_to(outside[0])
    (outside[0] / "big.bin").write_bytes(bytes(4 << 20))
    seen = {}
    for name, root in (("deep", deep), ("shallow", shallow)):
        folder = tree.open_folder(root)
        try:
            seen[name] = tree.measure(folder, 1 << 30, 1 << 20, max_depth=64)
        finally:
            os.close(folder)
    assert seen["deep"].too_deep and seen["deep"].entries < 100
    assert not seen["shallow"].too_deep and seen["shallow"].entries == 12  # 10 folders, the file, the link
    assert 8192 <= seen["shallow"].bytes < 1 << 20  # the host's big file, behind the link, is not counted


def test_placing_a_file_follows_no_link_and_overwrites_nothing(tmp_path: Path, outside: tuple[Path, Path]) -> None:
    root = tmp_path / "work"
    root.mkdir()
    source = tmp_path / "history.json"
    source.write_text("{}")
    (root / "runs").symlink_to(outside[0])
    (root / "taken.txt").write_text("the student's")
    folder = tree.open_folder(root)
    try:
        with pytest.raises(OSError):
            tree.place(folder, "runs/grid/history.json", source)
        with pytest.raises(FileExistsError):
            tree.place(folder, "taken.txt", source)
        tree.place(folder, "data/new/history.json", source)
    finally:
        os.close(folder)
    assert sorted(p.name for p in outside[0].iterdir()) == ["keep.txt"]
    assert (root / "data" / "new" / "history.json").read_text() == "{}"
    assert (root / "taken.txt").read_text() == "the student's"


def test_every_descriptor_is_closed(tmp_path: Path, outside: tuple[Path, Path]) -> None:
    before = len(os.listdir("/proc/self/fd"))
    root = tmp_path / "work"
    hostile_tree(root, outside)
    folder = tree.open_folder(root)
    tree.measure(folder, 1 << 30, 1 << 20, max_depth=64)
    tree.empty(folder)
    os.close(folder)
    assert len(os.listdir("/proc/self/fd")) == before
    assert Path(root).is_dir() and not any(Path(root).iterdir())
