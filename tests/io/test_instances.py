"""Instance-mask files: the palette PNG round trip and every consumer of an instance map."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from unsegcli.errors import InputError
from unsegcli.io import instances as inst
from unsegcli.io.masks import encode_png
from unsegcli.labels import components
from unsegcli.labels.components import extract_boxes


def instance_map() -> np.ndarray:
    lab = np.zeros((40, 60), np.uint8)
    lab[5:15, 10:30] = 1
    lab[20:35, 40:55] = 2
    lab[30:38, 2:6] = 3
    lab[0:3, 50:60] = 3  # object 3 in two pieces
    return lab


def test_instance_png_round_trip(tmp_path):
    lab = instance_map()
    data = inst.encode_instances(lab)
    with Image.open(io.BytesIO(data)) as im:
        assert im.mode == "P"
        pal = np.array(im.getpalette()[:768]).reshape(256, 3)
    assert pal[1].tolist() == [128, 0, 0] and pal[2].tolist() == [0, 128, 0] and pal[3].tolist() == [128, 128, 0]
    assert pal[255].tolist() == [224, 224, 192]  # VOC's 'void' colour
    assert np.array_equal(inst.decode_instances(data), lab)
    path = tmp_path / "a.png"
    inst.write_instances(path, lab)
    assert inst.is_instance_png(path) and np.array_equal(inst.decode_instances(path), lab)
    gray = tmp_path / "g.png"
    gray.write_bytes(encode_png(lab * 80))
    assert not inst.is_instance_png(gray)
    with pytest.raises(InputError, match="not an instance mask"):
        inst.decode_instances(gray)
    with pytest.raises(InputError, match="no such file"):
        inst.decode_instances(tmp_path / "none.png")


def test_instance_consumers(tmp_path):
    lab = instance_map()
    comps, label_img = components.instance_boxes(lab)
    assert [c.xyxy for c in comps] == [(10, 5, 30, 15), (40, 20, 55, 35), (2, 0, 60, 38)]
    assert [c.area for c in comps] == [200, 225, 62] and all(c.score == 1.0 for c in comps)
    assert all((label_img == c.label).sum() == c.area for c in comps)
    split, split_img = components.instance_boxes(lab, split_components=True)
    assert [c.xyxy for c in split] == [(10, 5, 30, 15), (40, 20, 55, 35), (2, 30, 6, 38), (50, 0, 60, 3)]
    assert all((split_img == c.label).sum() == c.area for c in split)
    big, _ = components.instance_boxes(lab, min_area=0.05)  # 5% of 2400 px = 120: the 4x8 piece's box stays (58x38)
    assert len(big) == 3
    assert [m.sum() for m in components.instances_to_components(lab, True)] == [200, 225, 32, 30]
    assert inst.largest_object(lab).sum() == 225
    path = tmp_path / "x.png"
    inst.write_instances(path, lab)
    union = inst.read_mask_or_instances(str(path))
    assert set(np.unique(union)) == {0, 255} and (union > 0).sum() == 487
    # the union flows through the existing grayscale box code unchanged
    boxes, _ = extract_boxes(union, multi=True, min_area=0.0)
    assert len(boxes) == 4
    assert inst.read_mask_or_instances(str(path), "largest").sum() == 225 * 255
