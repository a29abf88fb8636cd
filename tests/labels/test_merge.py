"""`unseg merge`: part files renumbered, conflicts refused."""

from __future__ import annotations

import json


def test_merge_renumbers_and_rejects_conflicts(tmp_path, cli):
    def coco(images, anns):
        return {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "fg", "supercategory": "fg"}]}

    ann = {
        "category_id": 1,
        "bbox": [0.0, 0.0, 2.0, 2.0],
        "area": 4,
        "iscrowd": 0,
        "score": 0.9,
        "segmentation": {"size": [4, 4], "counts": "02208"},  # the 2x2 box at (0, 0)
    }
    a = coco([{"id": 7, "file_name": "b.jpg", "width": 4, "height": 4}], [{**ann, "id": 3, "image_id": 7}])
    b = coco(
        [
            {"id": 1, "file_name": "a.jpg", "width": 4, "height": 4},
            {"id": 2, "file_name": "b.jpg", "width": 4, "height": 4},
        ],
        [{**ann, "id": 1, "image_id": 2}],
    )
    (tmp_path / "a.json").write_text(json.dumps(a))
    (tmp_path / "b.json").write_text(json.dumps(b))
    res = cli("merge", tmp_path / "a.json", tmp_path / "b.json", "--out", "-")
    out = json.loads(res.stdout)
    assert [(i["id"], i["file_name"]) for i in out["images"]] == [(1, "a.jpg"), (2, "b.jpg")]
    assert [(x["id"], x["image_id"]) for x in out["annotations"]] == [(1, 2)]
    b["annotations"][0]["bbox"] = [1.0, 1.0, 2.0, 2.0]
    (tmp_path / "c.json").write_text(json.dumps(b))
    res = cli("merge", tmp_path / "a.json", tmp_path / "c.json", "--out", tmp_path / "x.json")
    assert res.exit_code == 1 and "b.jpg" in res.stderr and "a.json" in res.stderr and "c.json" in res.stderr
    assert not (tmp_path / "x.json").exists()
    (tmp_path / "l1.jsonl").write_text(json.dumps({"file_name": "z.jpg", "boxes": [[0, 0, 1, 1]]}) + "\n")
    (tmp_path / "l2.jsonl").write_text(json.dumps({"file_name": "y.jpg", "boxes": []}) + "\n")
    res = cli("merge", tmp_path / "l1.jsonl", tmp_path / "l2.jsonl", "--out", "-")
    assert [json.loads(s)["file_name"] for s in res.stdout.splitlines()] == ["y.jpg", "z.jpg"]
    (tmp_path / "l3.jsonl").write_text(json.dumps({"file_name": "z.jpg", "boxes": [[0, 0, 2, 2]]}) + "\n")
    res = cli("merge", tmp_path / "l1.jsonl", tmp_path / "l3.jsonl", "--out", "-")
    assert res.exit_code == 1 and "'z.jpg' differs between" in res.stderr and "l3.jsonl" in res.stderr
    assert cli("merge", tmp_path / "l1.jsonl", tmp_path / "a.json", "--out", "-").exit_code == 2  # a mix
    (tmp_path / "det.json").write_text(json.dumps([{"image_id": 1, "bbox": [0, 0, 1, 1], "score": 1.0}]))
    res = cli("merge", tmp_path / "det.json", "--out", "-")
    assert res.exit_code == 1 and "detector results" in res.stderr


def test_coco_parts_merge_to_coco_only(tmp_path, cli):
    """--format converts parquet parts (tests/integrations/test_ray.py); COCO parts keep their format."""
    doc = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "fg", "supercategory": "fg"}]}
    (tmp_path / "a.json").write_text(json.dumps(doc))
    res = cli("merge", tmp_path / "a.json", "--format", "jsonl", "--out", tmp_path / "m.jsonl")
    assert res.exit_code == 2 and "coco parts merge to coco" in res.output and not (tmp_path / "m.jsonl").exists()
    assert cli("merge", tmp_path / "a.json", "--format", "coco", "--out", tmp_path / "m.json").exit_code == 0
