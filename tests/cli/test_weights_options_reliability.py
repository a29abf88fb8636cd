"""Issue 24, classes 4, 5 and 9 through the real CLI (in process).

4. Weights files that cannot be used: a truncated or corrupt ``.safetensors`` backbone was a SafetensorError
   traceback; weights holding NaN/inf loaded and wrote empty masks with exit 0. Every reader now names the file
   in one line (CheckpointError, exit 1, as a bad ``.pth`` checkpoint always did) and refuses non-finite weights
   naming the first bad tensor, before any image is read.
5. Options checked late or not at all: ``predict --refine crf`` without the extra failed every mask after
   computing it; ``--refine-output`` without ``--refine`` was ignored; ``weights fetch --timeout -1/nan/inf``
   reached the socket; nan/inf and negative numbers reached torch (``train --lr``). All are usage errors (exit 2)
   naming the flag, before any work.
9. ``train --out`` inside the training images is refused (exit 2), nothing written.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from unsegcli.errors import CheckpointError

from ..helpers import save_dino_backbone, tiny_model, write_images

DEMO = Path(__file__).parents[2] / "unsegcli" / "weights_data" / "unseg-demo-synth.pt"


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    """Images; a patch-16 DINO backbone for the training-free methods and one of the 'tiny' preset's shape for
    training, each as .pth and .safetensors; broken copies of them."""
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("w")
    write_images(root / "imgs", [(48, 48), (32, 64)])
    for name, kw in (("dino16", {}), ("tiny8", {"patch_size": 8, "embed_dim": 32})):
        state = torch.load(save_dino_backbone(root / f"{name}.pth", **kw), weights_only=True)
        save_file(state, str(root / f"{name}.safetensors"))
        data = (root / f"{name}.safetensors").read_bytes()
        (root / f"{name}_truncated.safetensors").write_bytes(data[: len(data) // 2])
        bad = {k: v.clone() for k, v in state.items()}
        bad["blocks.1.mlp.fc1.weight"][3, 2] = float("nan")
        torch.save(bad, root / f"{name}_nan.pth")
        bad["blocks.1.mlp.fc1.weight"][3, 2] = float("inf")
        save_file(bad, str(root / f"{name}_inf.safetensors"))
    (root / "garbage.safetensors").write_bytes(b"\x00\x01not a safetensors file")
    (root / "empty.safetensors").write_bytes(b"")
    return root


def refused_without_traceback(res, code: int, *names: str) -> None:
    assert res.exit_code == code, res.output
    assert "Traceback" not in res.stderr
    for name in names:
        assert name in res.stderr, (name, res.stderr)


# --- class 4: weights files ------------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["dino16_truncated.safetensors", "garbage.safetensors", "empty.safetensors"])
def test_a_corrupt_safetensors_backbone_is_one_line_naming_the_file(files, cli, bad):
    """Was: safetensors_rust.SafetensorError ("incomplete metadata, file not fully covered"), a traceback."""
    out = files / f"out_{bad}"
    res = cli("predict", files / "imgs", "--out", out, "--method", "tokencut", "--backbone", files / bad, "-q")
    refused_without_traceback(res, 1, f"{files / bad}: not a backbone state dict")
    assert len(res.stderr.strip().splitlines()) == 1 and not out.exists()


@pytest.mark.parametrize("method", ["sempart", "move"])
def test_train_names_a_corrupt_or_non_finite_backbone_and_writes_nothing(files, cli, tmp_path, method):
    extra = ["--inpainter", "blur"] if method == "move" else []
    for bad, said in (
        ("tiny8_truncated.safetensors", "not a backbone state dict"),
        ("tiny8_nan.pth", "tensor 'blocks.1.mlp.fc1.weight' holds NaN values"),
        ("tiny8_inf.safetensors", "tensor 'blocks.1.mlp.fc1.weight' holds infinite values"),
    ):
        res = cli(
            "train", files / "imgs", "--out", tmp_path / "run", "--method", method, "--arch", "tiny", "--steps", "1",
            "--crop", "32", "--random-init", "--backbone-weights", files / bad, "-q", *extra,
        )  # fmt: skip
        refused_without_traceback(res, 1, f"{files / bad}: {said}")
        assert not (tmp_path / "run").exists()
    # the same weights, finite, train: the refusal is the weights' values, nothing else
    res = cli(
        "train", files / "imgs", "--out", tmp_path / "run", "--method", method, "--arch", "tiny", "--steps", "1",
        "--crop", "32", "--random-init", "--backbone-weights", files / "tiny8.safetensors", "-q", *extra,
    )  # fmt: skip
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize("method", ["tokencut", "lost", "maskcut"])
def test_a_non_finite_backbone_is_refused_before_any_mask_is_written(files, cli, method):
    """Was: exit 0 and every mask empty (the keys were NaN)."""
    for bad, kind in (("dino16_nan.pth", "NaN"), ("dino16_inf.safetensors", "infinite")):
        out = files / f"out_{method}_{bad}"
        res = cli("predict", files / "imgs", "--out", out, "--method", method, "--backbone", files / bad, "-q")
        refused_without_traceback(res, 1, f"{files / bad}: tensor 'blocks.1.mlp.fc1.weight' holds {kind} values")
        assert not out.exists()
    res = cli("predict", files / "imgs", "--out", files / f"ok_{method}", "--method", method, "--backbone",
              files / "dino16.safetensors", "-q")  # fmt: skip
    assert res.exit_code == 0 and len(listing(files / f"ok_{method}")) == 2, res.output


def test_a_checkpoint_with_a_non_finite_weight_is_refused_by_every_command_that_loads_it(tmp_path, cli):
    """An unseg checkpoint whose head holds inf (a training run that diverged before the trainer's guard, a
    bit flip) predicted NaN everywhere; now predict, train --init and weights info name the file and tensor."""
    from unsegcli.config import PreprocessConfig
    from unsegcli.model.checkpoint import checkpoint_dict, save_checkpoint

    model = tiny_model()
    ckpt = checkpoint_dict(model, PreprocessConfig(size=32))
    name = next(k for k in ckpt["state_dict"] if k.startswith("head.") and k.endswith(".weight"))
    ckpt["state_dict"][name].view(-1)[5] = float("-inf")
    save_checkpoint(tmp_path / "bad.pt", ckpt)
    said = f"{tmp_path / 'bad.pt'}: tensor 'state_dict/{name}' holds infinite values"
    write_images(tmp_path / "imgs", [(32, 32)])
    res = cli("predict", tmp_path / "imgs", "--out", tmp_path / "m", "--weights", tmp_path / "bad.pt", "-q")
    refused_without_traceback(res, 1, said)
    assert not (tmp_path / "m").exists()
    res = cli("weights", "info", tmp_path / "bad.pt")
    refused_without_traceback(res, 1, said)
    res = cli(
        "train", tmp_path / "imgs", "--out", tmp_path / "run", "--init", tmp_path / "bad.pt", "--arch", "tiny",
        "--steps", "1", "--crop", "32", "--random-init", "--inpainter", "blur", "-q",
    )  # fmt: skip
    refused_without_traceback(res, 1, said)
    assert not (tmp_path / "run").exists()


def test_backbone_files_that_are_no_vit_state_dict_are_named(tmp_path):
    """Each was an AttributeError / IndexError / AssertionError traceback from inside the loader."""
    from unsegcli.model.dino_keys import load_dino_vit
    from unsegcli.model.state_dict import read_backbone_state

    good = torch.load(save_dino_backbone(tmp_path / "good.pth"), weights_only=True)
    cases = {
        "epoch.pth": ({**good, "epoch": 3}, "not a state dict of tensors ('epoch' is int)"),
        "list.pth": ([good["cls_token"]], "not a state dict (list)"),
        "rank.pth": ({**good, "cls_token": torch.zeros(())}, "its tensors do not have a ViT's shapes"),
        "nested_nan.pth": (
            {"teacher": {**good, "norm.bias": torch.full_like(good["norm.bias"], float("nan"))}},
            "tensor 'teacher/norm.bias' holds NaN values",
        ),
    }
    for name, (obj, said) in cases.items():
        torch.save(obj, tmp_path / name)
        with pytest.raises(CheckpointError) as e:
            load_dino_vit(tmp_path / name)
        assert e.value.message.startswith(f"{tmp_path / name}: ") and said in e.value.message, e.value.message
    # a width that DINO's 64-d head rule cannot split: timm asserted "dim should be divisible by num_heads"
    from unsegcli.config import BackboneConfig
    from unsegcli.model.backbone import build_vit

    odd = BackboneConfig(timm_name="", patch_size=16, embed_dim=200, depth=1, num_heads=2, img_size=32)
    torch.save(build_vit(odd).state_dict(), tmp_path / "w200.pth")
    with pytest.raises(CheckpointError, match=r"w200\.pth: no ViT of this shape can be built"):
        load_dino_vit(tmp_path / "w200.pth")
    assert set(read_backbone_state(tmp_path / "good.pth")) == set(good)


# --- class 5: options that cannot apply, checked before any work -----------------------------------
def test_predict_refine_crf_without_the_extra_is_refused_before_any_work(files, cli, monkeypatch):
    """Was: every mask computed, then each one failed ("needs the optional package pydensecrf2"), exit 1."""
    monkeypatch.setitem(sys.modules, "pydensecrf", None)  # the import fails, as when the extra is not installed
    monkeypatch.setitem(sys.modules, "pydensecrf.densecrf", None)
    out = files / "crf_out"
    res = cli("predict", files / "imgs", "--out", out, "--refine", "crf", "-q")
    refused_without_traceback(res, 2, "pydensecrf2", "pip install 'unseg[crf]'")
    assert not out.exists()


def test_refine_output_without_refine_is_a_usage_error_and_the_default_keeps_its_tag(files, cli, tiny_ckpt):
    """Was: --refine-output silently ignored (exit 0, unrefined masks)."""
    out = files / "refine_out"
    res = cli("predict", files / "imgs", "--out", out, "--weights", tiny_ckpt, "--refine-output", "component", "-q")
    refused_without_traceback(res, 2, "--refine-output", "--refine")
    assert not out.exists()
    # --refine alone still means the soft output: a run with it resumes under an explicit --refine-output soft
    res = cli("predict", files / "imgs", "--out", out, "--weights", tiny_ckpt, "--refine", "bilateral", "-q")
    assert res.exit_code == 0, res.output
    res = cli("predict", files / "imgs", "--out", out, "--weights", tiny_ckpt, "--refine", "bilateral",
              "--refine-output", "soft")  # fmt: skip
    assert res.exit_code == 0 and "skipped 2" in res.stderr, res.output
    res = cli("predict", files / "imgs", "--out", out, "--weights", tiny_ckpt, "--refine", "bilateral",
              "--refine-output", "component")  # fmt: skip
    refused_without_traceback(res, 2, "other settings")


def test_an_option_that_applies_under_another_value_is_refused_when_given_otherwise():
    """--fixed-size with the pad or resize geometry (TokenCut's and LOST's default) was silently ignored."""
    from unsegcli.errors import UsageError
    from unsegcli.methods import method_options

    for method in ("tokencut", "lost"):
        with pytest.raises(UsageError, match="fixed_size applies with geometry fixed, not geometry pad"):
            method_options(method, fixed_size=224)
        assert method_options(method, fixed_size=224, geometry="fixed").fixed_size == 224
    with pytest.raises(UsageError, match="not geometry resize"):
        method_options("maskcut", fixed_size=224, geometry="resize")
    assert method_options("maskcut", fixed_size=224).fixed_size == 224  # MaskCut's default geometry is fixed


def test_fixed_size_below_one_patch_is_a_usage_error_before_any_image(files, cli):
    """Was: each image failed ("image 8x8 is smaller than one 16-px patch"), blaming the image, exit 1."""
    out = files / "fixed_out"
    res = cli("predict", files / "imgs", "--out", out, "--method", "tokencut", "--backbone", files / "dino16.pth",
              "--geometry", "fixed", "--fixed-size", "8")  # fmt: skip
    refused_without_traceback(res, 2, "--fixed-size 8 is smaller than one patch")
    assert "img_0" not in res.stderr and not out.exists()


@pytest.mark.parametrize("timeout", ["-1", "0", "nan", "inf", "1e12"])
def test_weights_fetch_refuses_a_timeout_that_is_no_wait_before_any_download(tmp_path, cli, monkeypatch, timeout):
    """Was: ValueError / OverflowError from the socket (a traceback) once online."""
    import urllib.request

    def no_network(*args, **kwargs):
        raise AssertionError("the network was reached")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    res = cli("weights", "fetch", "dino-vits8", "--timeout", timeout, "--out", tmp_path / "d.pth")
    refused_without_traceback(res, 2, "--timeout")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "args",
    [
        ("train", "IMGS", "--out", "RUN", "--steps", "1", "--lr", "-1"),
        ("train", "IMGS", "--out", "RUN", "--steps", "1", "--lr", "inf"),
        ("train", "IMGS", "--out", "RUN", "--steps", "1", "--lr", "nan"),
        ("refine", "IMGS", "--images", "IMGS", "--out", "RUN", "--sigma-spatial", "inf"),
        ("predict", "IMGS", "--out", "RUN", "--method", "lost", "--backbone", "B", "--fixed-size", "10"),
    ],
)
def test_numbers_that_are_not_finite_or_in_range_are_usage_errors(files, cli, tmp_path, args):
    """`--lr -1` / `nan` reached torch.optim ("ValueError: Invalid learning rate"); inf passed typer's ranges."""
    subst = {"IMGS": str(files / "imgs"), "RUN": str(tmp_path / "run"), "B": str(files / "dino16.pth")}
    argv = [subst.get(a, a.replace("RUN", str(tmp_path / "run"))) for a in args]
    res = cli(*argv)
    flag = next(a for a in reversed(args) if a.startswith("--"))
    refused_without_traceback(res, 2, flag)
    assert not (tmp_path / "run").exists()


# --- class 9: train --out inside the training images -----------------------------------------------
def test_train_out_inside_the_training_folder_is_refused_and_nothing_written(tmp_path, cli):
    imgs = tmp_path / "imgs"
    write_images(imgs, [(32, 32), (32, 32)])
    before = listing(imgs)
    for out in (imgs / "run", imgs):
        res = cli("train", imgs, "--out", out, "--arch", "tiny", "--random-init", "--inpainter", "blur",
                  "--steps", "1", "--crop", "32", "-q")  # fmt: skip
        refused_without_traceback(res, 2, "--out", "inside the input folder")
        assert listing(imgs) == before
