"""`unseg refine`'s edge cases (issue classes 3, 6 and 8): an instance mask among soft ones, no masks."""

from __future__ import annotations

import numpy as np

from unsegcli.io.instances import encode_instances

from ..helpers import noise_photo, square_mask_png


def test_refine_refuses_an_instance_mask_naming_it_and_refines_the_rest(tmp_path, cli):
    masks, images, out = tmp_path / "masks", tmp_path / "images", tmp_path / "out"
    square_mask_png(masks / "soft.png")
    labels = np.zeros((32, 32), np.uint8)
    labels[4:20, 4:20] = 1
    labels[22:30, 22:30] = 2
    (masks / "objects.png").write_bytes(encode_instances(labels))
    noise_photo(images / "soft.jpg")
    noise_photo(images / "objects.jpg")
    res = cli("refine", masks, "--images", images, "--out", out, "-j", "0")
    assert res.exit_code == 1
    assert "objects.png" in res.output and "instance (palette) mask" in res.output
    assert (out / "soft.png").is_file() and not (out / "objects.png").exists()  # never silently emptied


def test_refine_of_an_empty_masks_folder_is_a_usage_error(tmp_path, cli):
    (tmp_path / "masks").mkdir()
    (tmp_path / "images").mkdir()
    noise_photo(tmp_path / "images" / "a.jpg")
    res = cli("refine", tmp_path / "masks", "--images", tmp_path / "images", "--out", tmp_path / "out")
    assert res.exit_code == 2 and "no mask PNGs" in res.output


def test_an_output_the_crf_cannot_give_is_refused_not_ignored(tmp_path, cli):
    """The CRF writes a 0/255 labelling: `--output component` with it is a usage error naming the flag of the
    command that ran, before any work (it was silently ignored)."""
    square_mask_png(tmp_path / "masks" / "a.png")
    noise_photo(tmp_path / "images" / "a.jpg")
    res = cli("refine", tmp_path / "masks", "--images", tmp_path / "images", "--out", tmp_path / "out",
              "--method", "crf", "--output", "component")  # fmt: skip
    assert res.exit_code == 2 and "--output component" in res.output and "CRF" in res.output
    res = cli(
        "predict", tmp_path / "images", "--out", tmp_path / "p", "--refine", "crf", "--refine-output", "component"
    )
    assert res.exit_code == 2 and "--refine-output component applies to --refine bilateral" in res.output
    assert not (tmp_path / "out").exists() and not (tmp_path / "p").exists()
