"""io/pairing: the one rule set that pairs images, masks and ground truth for every command."""

from __future__ import annotations

from unsegcli.io.pairing import FileIndex, coco_number, key_of, stem


def _touch(root, *rels):
    for rel in rels:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"")


def test_names_keys_stems_and_coco_numbers():
    assert key_of("a/b.c.png") == "a/b.c" and key_of("a\\b.jpg") == "a/b"
    assert stem("x/y/COCO_val2014_000000000042.jpg") == "COCO_val2014_000000000042"
    assert coco_number("COCO_val2014_000000000042.jpg") == 42 and coco_number("cat.jpg") is None


def test_by_key_pairs_a_mask_with_its_image_and_records_two_extensions(tmp_path):
    _touch(tmp_path, "a.jpg", "a.png", "sub/b.jpg", ".hidden.jpg")
    index = FileIndex(str(tmp_path), (".jpg", ".png"))
    b = index.by_key("sub/b")
    assert b.item is not None and b.item.rel == "sub/b.jpg" and not b.ambiguous
    a = index.by_key("a")
    assert a.item is None and a.ambiguous and a.candidates == (str(tmp_path / "a.jpg"), str(tmp_path / "a.png"))
    message = a.problem("masks/a.png", "image", str(tmp_path))
    assert message.startswith("masks/a.png: its image is ambiguous: 2 files fit (") and "keep one" in message
    missing = index.by_key("c")
    assert missing.item is None and not missing.ambiguous
    assert missing.problem("m/c.png", "image", "imgs") == "m/c.png: no image 'c.*' under imgs"
    assert index.by_key(".hidden").item is None  # hidden files are never inputs


def test_by_name_prefers_the_exact_file_and_find_falls_back_to_a_unique_stem(tmp_path):
    _touch(tmp_path, "a.jpg", "a.png", "deep/x.jpg", "p/c.jpg", "q/c.jpg")
    index = FileIndex(str(tmp_path), (".jpg", ".png"))
    exact = index.by_name("a.png")
    assert exact.item is not None and exact.item.rel == "a.png"
    assert index.by_name("a.gif").ambiguous  # another extension: both a.jpg and a.png fit
    found = index.find("elsewhere/x.jpg")
    assert found.item is not None and found.item.rel == "deep/x.jpg"
    dup = index.find("c.jpg")
    assert dup.item is None and dup.ambiguous and len(dup.candidates) == 2


def test_by_number_finds_coco_file_names_and_records_duplicates(tmp_path):
    _touch(tmp_path, "COCO_train2014_000000000009.jpg", "v/COCO_val2014_000000000011.jpg", "w/x_11.jpg")
    index = FileIndex(str(tmp_path), (".jpg",))
    nine = index.by_number(9)
    assert nine.item is not None and nine.item.rel == "COCO_train2014_000000000009.jpg"
    assert index.by_number(11).ambiguous and index.by_number(12).item is None
