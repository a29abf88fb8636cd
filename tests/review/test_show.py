"""`unseg show`: overlay pixels on known masks and boxes, the report's contents, flags, sampling,
label-file readers, GT matching, and a bad image among good ones."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from unsegcli.errors import UsageError
from unsegcli.io.datasets import GTImage
from unsegcli.io.instances import encode_instances
from unsegcli.review import overlay as ov
from unsegcli.review.records import FlagRules, ReviewItem, compute_flags
from unsegcli.review.report import ReportOptions, output_stem, select, write_report
from unsegcli.review.sources import from_masks, read_labels, score_against_gt

GREY = 100


def blend(base: int, colour: tuple[int, int, int], alpha: float = ov.TINT_ALPHA) -> list[int]:
    return [int(np.rint(base * (1 - alpha) + c * alpha)) for c in colour]


def grey(h: int = 64, w: int = 64) -> np.ndarray:
    return np.full((h, w, 3), GREY, np.uint8)


# --- overlay pixels ----------------------------------------------------------------------------------


def test_soft_mask_tint_inside_outline_on_border_nothing_outside():
    mask = np.zeros((64, 64), np.uint8)
    mask[16:48, 16:48] = 255
    mask[20:30, 50:60] = 100  # 100/255 < 0.5: background, must stay untouched
    out = ov.draw_overlay(grey(), mask)
    assert out[32, 32].tolist() == blend(GREY, ov.TINT)  # inside: tinted
    for y, x in [(16, 32), (47, 32), (32, 16), (32, 47)]:  # first/last row and column of the square
        assert out[y, x].tolist() == list(ov.OUTLINE)
    assert out[17, 32].tolist() == blend(GREY, ov.TINT)  # 1 px outline on a 64 px image
    assert out[15, 32].tolist() == [GREY] * 3 and out[25, 55].tolist() == [GREY] * 3


def test_threshold_decides_the_tint():
    mask = np.full((32, 32), 100, np.uint8)  # 100/255 = 0.39
    assert ov.draw_overlay(grey(32, 32), mask, threshold=0.5)[16, 16].tolist() == [GREY] * 3
    assert ov.draw_overlay(grey(32, 32), mask, threshold=0.3)[16, 16].tolist() == blend(GREY, ov.TINT)


def test_instance_mask_palette_colours_and_outline_between_touching_objects():
    labels = np.zeros((64, 64), np.uint8)
    labels[10:50, 10:30] = 1
    labels[10:50, 30:50] = 2
    out = ov.draw_overlay(grey(), labels, instances=True)
    assert out[30, 20].tolist() == blend(GREY, (128, 0, 0))  # VOC colour 1
    assert out[30, 40].tolist() == blend(GREY, (0, 128, 0))  # VOC colour 2
    assert out[30, 29].tolist() == list(ov.OUTLINE) and out[30, 30].tolist() == list(ov.OUTLINE)
    assert out[5, 5].tolist() == [GREY] * 3


def test_boxes_drawn_on_their_edges_gt_in_its_own_colour():
    box = np.array([[10, 12, 40, 50]], float)  # continuous XYXY: columns 10..39, rows 12..49
    gt = np.array([[4, 4, 60, 60]], float)
    out = ov.draw_overlay(grey(), None, box, np.array([np.nan]), gt)
    for y, x in [(30, 10), (30, 39), (12, 25), (49, 25)]:
        assert out[y, x].tolist() == list(ov.PRED)
    assert out[30, 9].tolist() == [GREY] * 3 and out[30, 40].tolist() == [GREY] * 3  # just outside
    assert out[30, 25].tolist() == [GREY] * 3  # inside
    assert out[30, 4].tolist() == list(ov.GT) and out[59, 30].tolist() == list(ov.GT)


def test_hits_and_misses_recolour_boxes_and_scores_get_a_tag():
    boxes = np.array([[10, 20, 30, 40], [35, 20, 60, 40]], float)
    out = ov.draw_overlay(grey(), None, boxes, np.array([0.9, 0.4]), hits=np.array([True, False]))
    assert out[30, 10].tolist() == list(ov.HIT) and out[30, 35].tolist() == list(ov.MISS)
    tag = out[:20, 10:35].reshape(-1, 3)  # above the first box: its score tag, box colour and dark text
    assert (tag == ov.HIT).all(axis=1).any() and (tag.max(axis=1) < 60).any()
    assert (out[:20] == GREY).all(axis=2).sum() < 64 * 20  # something was drawn there


def test_mask_of_another_size_is_refused():
    with pytest.raises(ValueError):
        ov.draw_overlay(grey(), np.zeros((32, 32), np.uint8))


# --- flags, sampling, names --------------------------------------------------------------------------


def item(name: str, boxes, scores=None, size=(64, 64), **kw) -> ReviewItem:
    b = np.asarray(boxes, float).reshape(-1, 4)
    s = np.asarray(scores if scores is not None else [0.9] * len(b), float)
    return ReviewItem(
        name=name,
        image_path=kw.pop("image_path", None),
        size=size,
        boxes=b,
        scores=s,
        areas=(b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]),
        **kw,
    )


def test_flags():
    rules = FlagRules(many_boxes=3, low_score=0.6)
    assert compute_flags(item("a", [[10, 10, 30, 30]]), rules) == []
    assert compute_flags(item("b", []), rules) == ["no-box"]
    assert compute_flags(item("c", [[10, 10, 20, 20]] * 4), rules) == ["many-boxes"]
    assert compute_flags(item("d", [[0, 10, 30, 30]]), rules) == ["border"]
    assert compute_flags(item("e", [[10, 10, 30, 64]]), rules) == ["border"]  # exclusive end = the edge
    assert compute_flags(item("f", [[1, 1, 63, 63]]), rules) == []
    assert compute_flags(item("g", [[10, 10, 30, 30]], [0.55]), rules) == ["low-score"]
    assert compute_flags(item("h", [[10, 10, 30, 30]], [np.nan]), rules) == []  # no score: not low


def test_sampling_is_deterministic_and_a_subset():
    items = [item(f"im{i:02d}", [[1, 1, 5, 5]]) for i in range(30)]
    a = select(items, 5, seed=3)
    assert a == select(items, 5, seed=3) and len(a) == 5 and a == sorted(set(a))
    assert {tuple(select(items, 5, seed=s)) for s in range(5)} != {tuple(a)}  # the seed matters
    assert select(items, 100, seed=3) == list(range(30)) and select(items, None, 0) == list(range(30))
    items[7].flags = ["no-box"]
    assert select(items, None, 0, only_flagged=True) == [7]


def test_output_stems_stay_inside_and_do_not_clash():
    taken: set[str] = set()
    assert output_stem("sub/a.jpg", taken) == "sub/a"
    assert output_stem("/abs/../../x.png", taken) == "abs/x"
    assert output_stem("sub/a.png", taken) == "sub/a~2"


# --- the report --------------------------------------------------------------------------------------


def write_image(path: Path, h: int = 64, w: int = 64, value: int = 120) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), value, np.uint8)).save(path)
    return str(path)


def page_data(index: Path) -> dict:
    text = index.read_text()
    m = re.search(r'<script type="application/json" id="review-data">(.*?)</script>', text, re.S)
    assert m
    return json.loads(m.group(1))


def flag_section(text: str, flag: str) -> str:
    m = re.search(rf"<details[^>]*><summary><b>{flag}</b>.*?</details>", text, re.S)
    return m.group(0) if m else ""


def test_report_lists_every_image_and_the_flagged_ones(tmp_path):
    imgs = tmp_path / "images"
    items = [
        item("clean.png", [[10, 10, 40, 40]], image_path=write_image(imgs / "clean.png")),
        item("empty.png", [], image_path=write_image(imgs / "empty.png")),
        item(
            "crowd.png", [[2 + 6 * k, 10, 6 + 6 * k, 20] for k in range(7)], image_path=write_image(imgs / "crowd.png")
        ),
        item("edge.png", [[0, 10, 30, 30]], image_path=write_image(imgs / "edge.png")),
        item("weak.png", [[10, 10, 40, 40]], [0.52], image_path=write_image(imgs / "weak.png")),
        item('odd <b>&"name.png', [[10, 10, 40, 40]], image_path=write_image(imgs / "odd.png")),
    ]
    summary = write_report(items, tmp_path / "review", ReportOptions(), FlagRules(many_boxes=5, low_score=0.6))
    text = summary.index.read_text()
    data = page_data(summary.index)
    assert [d["n"] for d in data["items"]] == [it.name for it in items]
    assert {d["n"]: d["f"] for d in data["items"]} == {
        "clean.png": [],
        "empty.png": ["no-box"],
        "crowd.png": ["many-boxes"],
        "edge.png": ["border"],
        "weak.png": ["low-score"],
        'odd <b>&"name.png': [],
    }
    for flag, name in [
        ("no-box", "empty.png"),
        ("many-boxes", "crowd.png"),
        ("border", "edge.png"),
        ("low-score", "weak.png"),
    ]:
        section = flag_section(text, flag)
        assert name in section and "clean.png" not in section
    assert "odd <b>" not in text  # the name is escaped everywhere: in HTML and in the embedded JSON
    for d in data["items"]:
        assert (summary.index.parent / unquote(d["o"])).is_file() and (summary.index.parent / unquote(d["t"])).is_file()
    assert summary.flagged["no-box"] == 1 and summary.shown == 6 and summary.boxes == 11
    assert {p.name for p in (tmp_path / "review" / "plots").iterdir()} == {
        "boxes_per_image.svg",
        "box_area.svg",
        "scores.svg",
    }
    over = np.asarray(Image.open(summary.index.parent / data["items"][0]["o"]))
    assert over[25, 10].tolist() == list(ov.PRED)  # the clean image's box, on its left edge


def test_rerun_redraws_only_what_changed(tmp_path):
    imgs = tmp_path / "images"
    items = [item(f"{k}.png", [[5, 5, 20, 20]], image_path=write_image(imgs / f"{k}.png")) for k in "abc"]
    assert write_report(items, tmp_path / "review").drawn == 3
    items[1].boxes = np.array([[6.0, 5, 20, 20]])  # b changed, c lost its thumbnail, a is up to date
    (tmp_path / "review" / "thumbs" / "c.jpg").unlink()
    assert write_report(items, tmp_path / "review").drawn == 2
    assert write_report(items, tmp_path / "review", ReportOptions(redraw=True)).drawn == 3
    over = np.asarray(Image.open(tmp_path / "review" / "overlays" / "b.png"))
    assert over[10, 6].tolist() == list(ov.PRED) and over[10, 5].tolist() != list(ov.PRED)


def test_a_bad_image_is_named_and_the_rest_still_written(tmp_path):
    bad = tmp_path / "images" / "bad.jpg"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not a jpeg at all")
    items = [
        item("good.png", [[5, 5, 20, 20]], image_path=write_image(tmp_path / "images" / "good.png")),
        item("bad.jpg", [[5, 5, 20, 20]], image_path=str(bad)),
    ]
    errors: list[str] = []
    summary = write_report(items, tmp_path / "review", ReportOptions(workers=2), on_error=errors.append)
    assert len(errors) == 1 and str(bad) in errors[0]
    data = {d["n"]: d for d in page_data(summary.index)["items"]}
    assert data["bad.jpg"]["f"] == ["failed"] and data["bad.jpg"]["t"] is None and str(bad) in data["bad.jpg"]["e"]
    assert (tmp_path / "review" / data["good.png"]["o"]).is_file()
    assert "bad.jpg" in flag_section(summary.index.read_text(), "failed")


def test_gt_gives_ious_hits_misses_and_the_corloc_plot(tmp_path):
    imgs = tmp_path / "images"
    items = [
        item("000001.jpg", [[10, 10, 40, 40], [0, 0, 8, 8]], [0.9, 0.8], image_path=write_image(imgs / "a.png")),
        item("000002.jpg", [[10, 10, 20, 20]], image_path=write_image(imgs / "b.png")),
    ]
    gt = [
        GTImage("000001", "000001.jpg", 128, 128, np.array([[20.0, 20, 80, 80]])),  # 2x frame: box scales
        GTImage("000002", "000002.jpg", 64, 64, np.array([[30.0, 30, 60, 60]])),
        GTImage("000003", "000003.jpg", 64, 64, np.array([[0.0, 0, 10, 10]])),
    ]
    pseudo = tmp_path / "pseudo.jsonl"
    pseudo.write_text(
        _lines([{"file_name": it.name, "width": 64, "height": 64, "boxes": it.boxes.tolist()} for it in items])
    )
    scored = score_against_gt(items, "jsonl", str(pseudo), gt, "largest")
    assert (scored.images, scored.hits, scored.missing) == (3, 1, 1)
    det = ReviewItem(
        name="results-7",
        image_path=None,
        image_id="2",
        boxes=np.array([[30.0, 30, 60, 60]]),
        scores=np.array([0.5]),
        areas=np.array([900.0]),
    )
    results = tmp_path / "results.json"
    results.write_text(json.dumps([{"image_id": 2, "bbox": [30, 30, 30, 30], "score": 0.5, "category_id": 1}]))
    coco_gt = [GTImage(2, "000002.jpg", 64, 64, np.array([[30.0, 30, 60, 60]]))]
    score_against_gt([det], "detector results", str(results), coco_gt)  # detector results match by image id
    assert det.hit and det.gt_size == (64, 64)
    ious = items[0].ious
    assert ious is not None and items[0].hit
    assert ious[0] == pytest.approx(1.0, abs=1e-6) and ious[1] == 0.0 and items[1].hit is False
    summary = write_report(items, tmp_path / "review", corloc=scored)
    assert summary.corloc == pytest.approx(100 / 3)  # the unmatched GT image counts as a miss
    assert items[1].flags == ["miss"]
    assert (tmp_path / "review" / "plots" / "corloc_iou.svg").is_file()
    over = np.asarray(Image.open(tmp_path / "review" / "overlays" / "000001.png"))
    assert over[25, 10].tolist() == list(ov.HIT) and over[4, 0].tolist() == list(ov.MISS)
    assert over[30, 10 + 15].tolist() != list(ov.GT)  # GT (10,10,40,40) in the image frame lies under the hit
    over2 = np.asarray(Image.open(tmp_path / "review" / "overlays" / "000002.png"))
    assert over2[45, 30].tolist() == list(ov.GT) and over2[15, 10].tolist() == list(ov.MISS)


# --- inputs ------------------------------------------------------------------------------------------


def test_masks_folder_soft_and_instance_pngs(tmp_path):
    masks, imgs = tmp_path / "masks", tmp_path / "images"
    masks.mkdir()
    soft = np.zeros((64, 64), np.uint8)
    soft[8:24, 8:40] = 204  # one component, score 0.8
    Image.fromarray(soft).save(masks / "a.png")
    labels = np.zeros((64, 64), np.uint8)
    labels[0:10, 0:10] = 1
    labels[30:60, 20:50] = 2
    (masks / "b.png").write_bytes(encode_instances(labels))
    write_image(imgs / "a.jpg")
    errors: list[str] = []
    items = from_masks(str(masks), str(imgs), on_error=errors.append)
    a, b = items
    assert a.boxes.tolist() == [[8, 8, 40, 24]] and a.scores[0] == pytest.approx(0.8) and a.areas.tolist() == [512]
    assert str(a.image_path).endswith("a.jpg") and a.name == "a.jpg"
    assert b.boxes.tolist() == [[0, 0, 10, 10], [20, 30, 50, 60]] and np.isnan(b.scores).all()
    assert b.error and "b" in errors[0]  # no image b.* under images/: reported, kept, flagged


def _lines(rows: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


@pytest.mark.parametrize("fmt", ["coco", "jsonl", "lost-cad", "selfmask", "detector results"])
def test_label_files_of_every_format(tmp_path, fmt):
    from pycocotools import mask as mask_utils

    m = np.zeros((40, 60), np.uint8, order="F")
    m[5:15, 10:30] = 1
    rle = mask_utils.encode(m)
    rle = {"size": rle["size"], "counts": rle["counts"].decode()}
    docs = {
        "coco": {
            "images": [{"id": 1, "file_name": "x.jpg", "width": 60, "height": 40}],
            "annotations": [
                {
                    "id": 1,
                    "image_id": 1,
                    "bbox": [10, 5, 20, 10],
                    "area": 200,
                    "score": 0.7,
                    "segmentation": rle,
                    "category_id": 1,
                    "iscrowd": 0,
                }
            ],
        },
        "lost-cad": {
            "dataset": [
                {
                    "file_name": "x.jpg",
                    "image_id": "x",
                    "width": 60,
                    "height": 40,
                    "annotations": [{"bbox": [10, 5, 30, 15], "bbox_mode": 0}],
                }
            ],
            "meta_data": {},
        },
        "selfmask": {"x.jpg": rle},
        "detector results": [{"image_id": 7, "bbox": [10, 5, 20, 10], "score": 0.7, "category_id": 1}],
    }
    path = tmp_path / "labels.json"
    if fmt == "jsonl":
        path.write_text(
            _lines(
                [
                    {
                        "file_name": "x.jpg",
                        "width": 60,
                        "height": 40,
                        "boxes": [[10, 5, 30, 15]],
                        "areas": [200],
                        "scores": [0.7],
                    },
                    {"file_name": "y.jpg", "width": 60, "height": 40, "boxes": []},
                ]
            )
        )
    else:
        path.write_text(json.dumps(docs[fmt]))
    got_fmt, items = read_labels(str(path))
    assert got_fmt == fmt
    assert items[0].boxes.tolist() == [[10, 5, 30, 15]]
    assert items[0].size == ((60, 40) if fmt != "detector results" else None)
    if fmt in ("coco", "jsonl", "detector results"):
        assert items[0].scores.tolist() == [0.7]
    if fmt in ("coco", "selfmask"):
        assert len(items[0].rles) == 1 and items[0].areas.tolist() == [200]
    if fmt == "jsonl":
        assert items[1].n_boxes == 0


def test_unreadable_label_file_is_an_input_error(tmp_path):
    from unsegcli.errors import InputError

    path = tmp_path / "x.json"
    path.write_text('{"something": 1}')
    with pytest.raises(InputError):
        read_labels(str(path))


# --- the command -------------------------------------------------------------------------------------


def test_show_command_writes_the_report_and_exits_1_naming_a_missing_image(tmp_path):
    from unsegcli.cli.show import EXAMPLES, show

    app = typer.Typer()
    app.command(epilog=EXAMPLES)(show)
    imgs = tmp_path / "images"
    write_image(imgs / "x.jpg")
    labels = tmp_path / "pseudo.jsonl"
    labels.write_text(
        _lines(
            [
                {"file_name": "x.jpg", "width": 64, "height": 64, "boxes": [[4, 4, 30, 30]], "scores": [0.9]},
                {"file_name": "gone.jpg", "width": 64, "height": 64, "boxes": []},
            ]
        )
    )
    res = CliRunner().invoke(
        app, [str(labels), "--images", str(imgs), "--out", str(tmp_path / "review"), "-j", "0", "-q"]
    )
    assert res.exit_code == 1, res.output
    assert "gone.jpg" in res.output
    data = page_data(tmp_path / "review" / "index.html")
    assert [d["n"] for d in data["items"]] == ["x.jpg", "gone.jpg"]
    assert (tmp_path / "review" / "overlays" / "x.png").is_file()
    res = CliRunner().invoke(app, [str(tmp_path / "nope"), "--out", str(tmp_path / "r2")])
    assert isinstance(res.exception, UsageError) and res.exception.exit_code == 2  # `unseg`'s group maps it to 2
