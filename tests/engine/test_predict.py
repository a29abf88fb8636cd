"""The inference library: sizes, values, bucketing, streaming to files, resume tags, the request check."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from unsegcli.config import PreprocessConfig
from unsegcli.engine.predict import predict_files
from unsegcli.errors import UsageError
from unsegcli.io.images import decode_image
from unsegcli.methods.move.predictor import predict_masks, resized_size

from ..helpers import PREDICT_SIZES, random_image, save_dino_backbone, tiny_model, write_images


def test_resized_size_follows_torchvision_rule():
    # hand-computed: shorter side -> 448, longer int(448 * long / short); cap by max_size
    assert resized_size(500, 375, 448, None) == (597, 448)
    assert resized_size(375, 500, 448, None) == (448, 597)
    assert resized_size(500, 375, 448, 500) == (500, 375)  # int(500 * 448 / 597) = 375
    assert resized_size(448, 300, 448, None) == (669, 448)  # 448 * 448 / 300 = 669.01


def test_bucketing_gives_the_same_masks_as_batch_one():
    model = tiny_model()
    images = [random_image(h, w, seed=i) for i, (h, w) in enumerate(PREDICT_SIZES)]
    one = predict_masks(model, images, PreprocessConfig(size=64), batch_size=1)
    many = predict_masks(model, images, PreprocessConfig(size=64), batch_size=3)
    for a, b in zip(one, many, strict=True):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_exif_orientation_is_applied_when_decoding(tmp_path):
    rgb = random_image(30, 40)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rgb).save(tmp_path / "r.png", exif=exif)
    arr = decode_image(str(tmp_path / "r.png"))
    np.testing.assert_array_equal(arr, np.rot90(rgb, k=-1))  # orientation 6 = rotate 90° clockwise


def test_predict_masks_leaves_the_callers_model_alone():
    model = tiny_model().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    predict_masks(model, [random_image(40, 60)], PreprocessConfig(size=64))
    assert model.training and not model.channels_last
    assert next(model.head.parameters()).is_contiguous()  # not switched to channels-last
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_mask_path_for_keeps_the_relative_path():
    from unsegcli.io.masks import mask_path_for

    assert mask_path_for("a/b/photo.JPG") == "a/b/photo.png"
    assert mask_path_for("x.tar.png") == "x.tar.png"
    assert mask_path_for("noext") == "noext.png"


class _Instances:
    """A MaskPredictor of kind "instances": object k = the k-th vertical band of the image."""

    kind = "instances"
    device = torch.device("cpu")

    def prepare(self, index, image):
        from unsegcli.engine.predictor import Prepared

        return Prepared(index, torch.zeros(1, *image.shape[:2]), image.shape[:2], image.shape[:2])

    def run(self, batch):
        out = []
        for p in batch:
            h, w = p.original
            out.append(np.repeat((np.arange(w) * 3 // w + 1).astype(np.uint8)[None], h, axis=0))
        return out


def test_predict_files_writes_instance_maps_as_palette_pngs(tmp_path):
    from unsegcli.engine.predict import list_prediction_inputs, predict_files
    from unsegcli.io.instances import decode_instances

    write_images(tmp_path / "imgs" / "sub", [(20, 30), (12, 9)])
    items = list_prediction_inputs([str(tmp_path / "imgs")], tmp_path / "out").items
    progress = []
    summary = predict_files(_Instances(), items, tmp_path / "out", on_progress=lambda n, t: progress.append((n, t)))
    assert (summary.images, summary.written, summary.skipped, summary.failed) == (2, 2, 0, 0)
    assert progress[0] == (0, 2) and sum(n for n, _ in progress) == 2
    path = tmp_path / "out" / "sub" / "img_00.png"
    assert Image.open(path).mode == "P"
    labels = decode_instances(path)
    np.testing.assert_array_equal(labels[0], np.arange(30) * 3 // 30 + 1)
    again = predict_files(_Instances(), items, tmp_path / "out")
    assert (again.written, again.skipped) == (0, 2)
    with pytest.raises(UsageError):
        predict_files(_Instances(), items, tmp_path / "out", binary=True)


def test_a_deferred_predictor_loads_before_the_progress_starts_and_only_when_an_output_is_missing(tmp_path):
    from unsegcli.engine.predict import list_prediction_inputs, predict_files
    from unsegcli.engine.predictor import DeferredPredictor

    write_images(tmp_path / "imgs", [(20, 30), (12, 9)])
    items = list_prediction_inputs([str(tmp_path / "imgs")], tmp_path / "out").items
    events: list = []
    deferred = DeferredPredictor("instances", lambda: events.append("load") or _Instances())
    predict_files(deferred, items, tmp_path / "out", on_progress=lambda n, t: events.append((n, t)))
    assert events[:2] == ["load", (0, 2)] and events.count("load") == 1
    events.clear()
    again = DeferredPredictor("instances", lambda: events.append("load") or _Instances())
    assert predict_files(again, items, tmp_path / "out", on_progress=lambda n, t: events.append((n, t))).skipped == 2
    assert events == [(0, 0)]  # every output exists: nothing loaded


def test_bucketed_emits_early_when_too_many_items_wait():
    from unsegcli.engine.predictor import Prepared, bucketed

    shapes = [(1, 4, 4), (1, 4, 8), (1, 8, 4), (1, 4, 4), (1, 8, 8), (1, 4, 4)]
    items = [Prepared(i, torch.zeros(s)) for i, s in enumerate(shapes)]
    batches = [[p.index for p in b] for b in bucketed(items, batch_size=3, max_pending=3)]
    # items 0-3 wait in three buckets; the 4th pending item exceeds max_pending: the fullest ({0, 3}) goes
    assert batches[0] == [0, 3]
    assert sorted(i for b in batches for i in b) == list(range(6))
    assert all(len({shapes[i] for i in b}) == 1 for b in batches)


def test_weights_identity_hashes_size_first_and_last_chunk(tmp_path):
    from unsegcli.io.outputs import weights_identity

    p = tmp_path / "w.bin"
    p.write_bytes(b"abcdefghij")
    expected = __import__("hashlib").sha256(b"10" + b"abcd" + b"ghij").hexdigest()[:16]
    assert weights_identity(p, chunk=4) == expected


def test_check_request_names_parameters_or_the_callers_words():
    from unsegcli.pipelines.predict import PredictRequest, check_request

    cases = [
        (PredictRequest("lost", options={"tau": 0.3}), "tau: not an option of method lost"),
        (PredictRequest("move", options={"k_patches": 5}), "k_patches: options of the training-free methods"),
        (PredictRequest("tokencut", weights="x.pt"), "weights names a checkpoint (method move)"),
        (PredictRequest("tokencut", max_size=64, compile=True), "max_size, compile: options of checkpoints"),
        (PredictRequest("maskcut", refine="bilateral"), "refine applies to soft masks; method maskcut"),
    ]
    for req, message in cases:
        with pytest.raises(UsageError) as e:
            check_request(req)
        assert str(e.value.message).startswith(message), e.value.message
    with pytest.raises(UsageError) as e:  # the CLI says parameters as the flags of the command that ran
        check_request(PredictRequest("lost", max_size=64))
    spelled = e.value.render(lambda name: "--" + name.replace("_", "-"))
    assert spelled.startswith("--max-size: options of checkpoints (--method move)")
    check_request(PredictRequest("lost", options={"k_patches": 5, "tau": None}))  # None = the default: fine


def test_plan_tags_settings_refuses_other_settings_and_builds_the_predictor(tmp_path, tiny_ckpt):
    from unsegcli.io.masks import read_tag, settings_tag
    from unsegcli.io.outputs import weights_identity
    from unsegcli.pipelines.predict import PredictRequest, build_predictor, plan_prediction

    write_images(tmp_path / "imgs", [(40, 60)])
    out = tmp_path / "m"
    soft = PredictRequest(weights=str(tiny_ckpt), device="cpu")
    plan = plan_prediction(soft, [str(tmp_path / "imgs")], out)
    assert plan.settings["weights"] == weights_identity(tiny_ckpt) and plan.settings["threshold"] is None
    assert plan.tag == settings_tag(plan.settings) and plan.precision == "fp32" and plan.device.type == "cpu"
    assert [it.rel for it in plan.listing.items] == ["img_00.png"]
    predictor = build_predictor(plan)
    summary = predict_files(predictor, plan.listing.items, out, tag=plan.tag)
    assert summary.written == 1
    assert read_tag(str(out / "img_00.png")) == plan.tag
    binary = PredictRequest(weights=str(tiny_ckpt), device="cpu", binary=True)
    with pytest.raises(UsageError) as e:  # resuming under other settings would mix two settings
        plan_prediction(binary, [str(tmp_path / "imgs")], out)
    assert "pass overwrite" in str(e.value.hint)
    assert "precision" not in plan.settings and "engine" not in plan.settings  # fp32 torch tags as ever
    for other in ({"precision": "bf16"}, {"engine": "openvino"}):  # masks that differ slightly: not mixed in
        with pytest.raises(UsageError, match="other settings"):
            plan_prediction(
                PredictRequest(weights=str(tiny_ckpt), device="cpu", **other), [str(tmp_path / "imgs")], out
            )
    again = PredictRequest(weights=str(tiny_ckpt), device="cpu", binary=True, overwrite=True)
    replanned = plan_prediction(again, [str(tmp_path / "imgs")], out)
    assert replanned.tag != plan.tag and replanned.settings["threshold"] == 0.5


def test_the_plan_knows_what_its_predictor_writes_before_loading_it(tmp_path, tiny_ckpt):
    """`predict` loads no model when every output exists, so where outputs go (``plan.kind``) cannot wait for it."""
    from unsegcli.pipelines.predict import PredictRequest, build_predictor, plan_prediction

    write_images(tmp_path / "imgs", [(40, 60)])
    dino = str(save_dino_backbone(tmp_path / "dino.pth"))
    small = {"backbone": dino, "fixed_size": 64}
    requests = {
        "soft": [PredictRequest(weights=str(tiny_ckpt)), PredictRequest("tokencut", options={"backbone": dino})],
        "instances": [PredictRequest("maskcut", options=small), PredictRequest("votecut", options=small)],
        "features": [PredictRequest("lost", options={"backbone": dino}, stage="features")],
    }
    for kind, reqs in requests.items():
        for i, req in enumerate(reqs):
            plan = plan_prediction(req, [str(tmp_path / "imgs")], tmp_path / f"{kind}{i}")
            assert plan.kind == build_predictor(plan).kind == kind, req
