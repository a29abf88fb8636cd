"""`unseg show` accounts for every input (issue classes 3, 6 and 8): photos, unreadable masks, masks of
another size, malformed annotations, names that are not UTF-8; its plots are byte-identical on every run."""

from __future__ import annotations

import json
import os
import re

import numpy as np

from unsegcli.review.records import ReviewItem
from unsegcli.review.report import write_plots

from ..helpers import noise_photo, square_mask_png


def _items(index) -> dict[str, dict]:
    data = re.search(r'id="review-data">(.*?)</script>', index.read_text(), re.S)
    assert data
    return {d["n"]: d for d in json.loads(data.group(1))["items"]}


def test_show_names_and_keeps_photos_unreadable_masks_and_masks_of_another_size(tmp_path, cli):
    masks, images = tmp_path / "masks", tmp_path / "images"
    square_mask_png(masks / "ok.png")
    noise_photo(masks / "photo.png")  # a colour photo given as a mask: `boxes` refuses it
    (masks / "broken.png").write_bytes(b"not a png")
    square_mask_png(masks / "small.png", 16, 16, (2, 2, 8, 8))  # its image is 32x32: it would be stretched
    for name in ("ok", "photo", "broken", "small"):
        noise_photo(images / f"{name}.jpg")
    res = cli("show", masks, "--images", images, "--out", tmp_path / "review", "-j", "0")
    assert res.exit_code == 1
    for name in ("photo.png", "broken.png", "small.png"):
        assert name in res.output
    assert "a colour image, not a mask" in res.output and "mask is 16x16 but image" in res.output
    items = _items(tmp_path / "review" / "index.html")
    assert set(items) == {"ok.jpg", "photo.png", "broken.png", "small.jpg"}  # every input in the report
    assert items["ok.jpg"]["f"] == [] and items["ok.jpg"]["t"]
    for name in ("photo.png", "broken.png", "small.jpg"):
        assert "failed" in items[name]["f"] and items[name]["e"] and items[name]["t"] is None


def test_show_with_two_malformed_annotations_names_each_and_writes_the_report(tmp_path, cli):
    voc = tmp_path / "voc"
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    (voc / "Annotations").mkdir()
    ids = ["a", "b", "c"]
    (voc / "ImageSets" / "Main" / "trainval.txt").write_text("\n".join(ids) + "\n")
    (voc / "Annotations" / "a.xml").write_text(
        "<annotation><size><width>32</width><height>32</height></size><object><bndbox><xmin>5</xmin>"
        "<ymin>5</ymin><xmax>20</xmax><ymax>20</ymax></bndbox></object></annotation>"
    )
    (voc / "Annotations" / "b.xml").write_text("<annotation>")
    (voc / "Annotations" / "c.xml").write_text("<annotation><size><width>x</width></size></annotation>")
    masks = tmp_path / "masks"
    for name in ids:
        square_mask_png(masks / f"{name}.png")
    res = cli("show", masks, "--gt", voc, "--out", tmp_path / "review", "-j", "0")
    assert res.exit_code == 1
    assert "b.xml" in res.output and "c.xml" in res.output and "CorLoc 100.00%" in res.output
    page = (tmp_path / "review" / "index.html").read_text()
    assert "b.xml" in page and "c.xml" in page and len(_items(tmp_path / "review" / "index.html")) == 3


def test_svg_plots_are_byte_identical_on_every_run(tmp_path):
    item = ReviewItem(
        name="a.jpg",
        image_path=None,
        size=(64, 64),
        boxes=np.array([[1.0, 1, 30, 30]]),
        scores=np.array([0.7]),
        areas=np.array([841.0]),
    )
    first, second = tmp_path / "1", tmp_path / "2"
    first.mkdir()
    second.mkdir()
    plots = write_plots([item], first)
    write_plots([item], second)
    assert len(plots) == 3
    for _, name in plots:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_show_copes_with_file_names_that_are_not_utf8(tmp_path, cli):
    masks, images = tmp_path / "masks", tmp_path / "images"
    masks.mkdir()
    images.mkdir()
    name = os.fsdecode(b"caf\xe9")  # Latin-1 bytes: not valid UTF-8
    square_mask_png(masks / f"{name}.png")
    noise_photo(images / f"{name}.jpg")
    square_mask_png(masks / "plain.png")
    noise_photo(images / "plain.jpg")
    res = cli("show", masks, "--images", images, "--out", tmp_path / "review", "-j", "0", "-q")
    assert res.exit_code == 0, res.output
    page = (tmp_path / "review" / "index.html").read_bytes().decode("utf-8")
    assert "caf\\\\xe9.jpg" in page and "overlays/caf%E9.png" in page  # shown escaped, linked by its bytes
    assert os.path.isfile(os.path.join(tmp_path / "review" / "overlays", f"{name}.png"))
    again = cli("show", masks, "--images", images, "--out", tmp_path / "review", "-j", "0")
    assert again.exit_code == 0 and "drawn 0" in again.output  # fingerprints of such names are stable
