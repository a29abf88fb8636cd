"""Known weights: where each comes from, which file it is, and how a name becomes a path.

Resolution order for the segmenter (``resolve_weights``): an explicit path, a known name,
``$UNSEG_WEIGHTS``, then the demo checkpoint. Nothing is downloaded implicitly; ``unseg weights fetch
NAME`` is the only network access.

Where known files live:
- shipped with the package (``packaged=True``, the demo checkpoint): ``PACKAGED_DIR``, i.e.
  ``unsegcli/weights_data/`` inside the installed package, with its model card (README.md);
- everything else (downloaded or converted): ``WEIGHTS_DIR`` = ``$UNSEG_WEIGHTS_DIR``, else the
  ``weights/`` folder of a source checkout, else ``~/.cache/unseg/weights`` (``$XDG_CACHE_HOME``).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError, WeightsNotFoundError

PACKAGED_DIR = Path(__file__).resolve().parents[1] / "weights_data"


def _weights_dir() -> Path:
    if os.environ.get("UNSEG_WEIGHTS_DIR"):
        return Path(os.environ["UNSEG_WEIGHTS_DIR"]).expanduser()
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file() and (checkout / "weights").is_dir():
        return checkout / "weights"
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "unseg" / "weights"


WEIGHTS_DIR = _weights_dir()


@dataclass(frozen=True)
class KnownWeights:
    name: str
    filename: str
    kind: str  # segmenter | backbone | decoder | inpainter | discriminator
    description: str
    url: str | None = None  # direct download (fetchable)
    sha256: str | None = None  # None where the publisher gives none
    source: str | None = None  # page to get it from by hand
    how: str | None = None  # command that produces the file, for converted weights
    packaged: bool = False  # shipped inside the package (PACKAGED_DIR), not in WEIGHTS_DIR
    licence: str = "unknown"  # the weights' licence as their publisher states it (README: Licences)


KNOWN: dict[str, KnownWeights] = {
    w.name: w
    for w in [
        KnownWeights(
            "demo-synth",
            "unseg-demo-synth.pt",
            "segmenter",
            "embedded demo: small ViT/8 + MOVE head trained on `unseg synth` shapes (not the paper's model)",
            sha256="0e297826ca42b5488941a325cba0cf2401936db2ca6756f1675245b573b99f69",
            how="make demo-model",
            packaged=True,
            licence="MIT (unseg's own; trained from scratch on generated images)",
        ),
        KnownWeights(
            "move-dino-vits8",
            "move-dino-vits8.pt",
            "segmenter",
            "official MOVE release (DINO ViT-S/8, conv_minc128) converted to unseg's format",
            source="https://github.com/adambielski/move-seg/releases/tag/move_model",
            how="unseg weights import-move checkpoint-N.pth --backbone dino_deitsmall8_pretrain.pth "
            "--out weights/move-dino-vits8.pt",
            licence="none stated: the official MOVE repository has no licence file (its DINO backbone: Apache-2.0)",
        ),
        KnownWeights(
            "dino-vits8",
            "dino_deitsmall8_pretrain.pth",
            "backbone",
            "DINO ViT-S/8 backbone (original facebookresearch/dino layout; timm: vit_small_patch8_224.dino)",
            url="https://dl.fbaipublicfiles.com/dino/dino_deitsmall8_pretrain/dino_deitsmall8_pretrain.pth",
            licence="Apache-2.0 (facebookresearch/dino LICENSE)",
        ),
        KnownWeights(
            "dino-vits16",
            "dino_deitsmall16_pretrain.pth",
            "backbone",
            "DINO ViT-S/16 (Apache-2.0): LOST and TokenCut's default backbone (main_lost.py, main_tokencut.py)",
            url="https://dl.fbaipublicfiles.com/dino/dino_deitsmall16_pretrain/dino_deitsmall16_pretrain.pth",
            licence="Apache-2.0 (facebookresearch/dino LICENSE)",
        ),
        KnownWeights(
            "dino-vitb8",
            "dino_vitbase8_pretrain.pth",
            "backbone",
            "DINO ViT-B/8 (Apache-2.0): MaskCut's backbone (CutLER README: --vit-arch base --patch-size 8)",
            url="https://dl.fbaipublicfiles.com/dino/dino_vitbase8_pretrain/dino_vitbase8_pretrain.pth",
            licence="Apache-2.0 (facebookresearch/dino LICENSE)",
        ),
        KnownWeights(
            "dino-vits8-300ep",
            "dino_deitsmall8_300ep_pretrain.pth",
            "backbone",
            "DINO ViT-S/8, 300 epochs (Apache-2.0): the 'small 8' file of LOST, TokenCut, MaskCut and FOUND, "
            "not MOVE's dino-vits8",
            url="https://dl.fbaipublicfiles.com/dino/dino_deitsmall8_300ep_pretrain/dino_deitsmall8_300ep_pretrain.pth",
            licence="Apache-2.0 (facebookresearch/dino LICENSE)",
        ),
        KnownWeights(
            "dino-vitb16",
            "dino_vitbase16_pretrain.pth",
            "backbone",
            "DINO ViT-B/16 (Apache-2.0): one of VoteCut's six backbones (CuVLER networks.py dino_b16)",
            url="https://dl.fbaipublicfiles.com/dino/dino_vitbase16_pretrain/dino_vitbase16_pretrain.pth",
            licence="Apache-2.0 (facebookresearch/dino LICENSE)",
        ),
        KnownWeights(
            "dinov2-vits14",
            "dinov2_vits14_pretrain.pth",
            "backbone",
            "DINOv2 ViT-S/14 (official facebookresearch/dinov2 layout; VoteCut's dinov2_s14)",
            url="https://dl.fbaipublicfiles.com/dinov2/dinov2_vits14/dinov2_vits14_pretrain.pth",
            source="https://github.com/facebookresearch/dinov2 (hubconf: dinov2_vits14)",
            licence="Apache-2.0 (facebookresearch/dinov2 LICENSE)",
        ),
        KnownWeights(
            "dinov2-vitb14",
            "dinov2_vitb14_pretrain.pth",
            "backbone",
            "DINOv2 ViT-B/14 (official facebookresearch/dinov2 layout; VoteCut's dinov2_b14)",
            url="https://dl.fbaipublicfiles.com/dinov2/dinov2_vitb14/dinov2_vitb14_pretrain.pth",
            source="https://github.com/facebookresearch/dinov2 (hubconf: dinov2_vitb14)",
            licence="Apache-2.0 (facebookresearch/dinov2 LICENSE)",
        ),
        KnownWeights(
            "dinov2-vits14-reg",
            "dinov2_vits14_reg4_pretrain.pth",
            "backbone",
            "DINOv2 ViT-S/14 with 4 registers (official facebookresearch/dinov2 layout; Darcet et al. 2024, registers)",
            url="https://dl.fbaipublicfiles.com/dinov2/dinov2_vits14/dinov2_vits14_reg4_pretrain.pth",
            source="https://github.com/facebookresearch/dinov2 (hubconf: dinov2_vits14_reg)",
            licence="Apache-2.0 (facebookresearch/dinov2 LICENSE)",
        ),
        KnownWeights(
            "dinov2-vitb14-reg",
            "dinov2_vitb14_reg4_pretrain.pth",
            "backbone",
            "DINOv2 ViT-B/14 with 4 registers (official facebookresearch/dinov2 layout; Darcet et al. 2024, registers)",
            url="https://dl.fbaipublicfiles.com/dinov2/dinov2_vitb14/dinov2_vitb14_reg4_pretrain.pth",
            source="https://github.com/facebookresearch/dinov2 (hubconf: dinov2_vitb14_reg)",
            licence="Apache-2.0 (facebookresearch/dinov2 LICENSE)",
        ),
        KnownWeights(
            "found-decoder",
            "found_decoder_weights.pt",
            "decoder",
            "FOUND's trained 1x1 decoder (2.7 KB, official data/weights/decoder_weights.pt), for the keys of "
            "dino-vits8-300ep: `unseg predict --method found`",
            # pinned to the commit read (valeoai/FOUND 1ad22ba); the file is unchanged since the first commit
            url="https://raw.githubusercontent.com/valeoai/FOUND/1ad22bacf1a6854faff1b5d4be300d54cad6f277/"
            "data/weights/decoder_weights.pt",
            sha256="47ff2a4af3dbc6c80cb832cc81f8ed8ae81809e52576d0de5f9c754cf46ef9b5",
            source="https://github.com/valeoai/FOUND",
            licence="Apache-2.0 (valeoai/FOUND LICENSE)",
        ),
        KnownWeights(
            "mae-vitl16-gan",
            "mae_visualize_vit_large_ganloss.pth",
            "inpainter",
            "MAE ViT-L/16 trained with a GAN loss: MOVE's frozen inpainter (checkpoint key 'model')",
            url="https://dl.fbaipublicfiles.com/mae/visualize/mae_visualize_vit_large_ganloss.pth",
            licence="CC BY-NC 4.0 (facebookresearch/mae LICENSE): non-commercial use only",
        ),
        KnownWeights(
            "efficientnet-lite0",
            "tf_efficientnet_lite0.safetensors",
            "discriminator",
            "timm tf_efficientnet_lite0.in1k: the frozen feature network of MOVE's projected discriminator "
            "(`unseg train --disc-weights`)",
            url="https://huggingface.co/timm/tf_efficientnet_lite0.in1k/resolve/main/model.safetensors",
            licence="Apache-2.0 (timm model card, huggingface.co/timm/tf_efficientnet_lite0.in1k)",
        ),
    ]
}

DEFAULT_SEGMENTER = "demo-synth"


def path_of(name: str) -> Path:
    w = KNOWN[name]
    return (PACKAGED_DIR if w.packaged else WEIGHTS_DIR) / w.filename


def _missing(name: str) -> WeightsNotFoundError:
    w = KNOWN[name]
    if w.url:
        hint = f"run `unseg weights fetch {name}` (online), or download {w.url} to {path_of(name)}"
    elif w.how:
        hint = f"create it with `{w.how}`" + (f" (source: {w.source})" if w.source else "")
    else:
        hint = f"get it from {w.source}"
    return WeightsNotFoundError(f"weights '{name}' not found: expected {path_of(name)}", hint)


def resolve_weights(
    spec: str | None, env_var: str | None = "UNSEG_WEIGHTS", default: str | None = DEFAULT_SEGMENTER
) -> Path:
    """PATH or NAME -> existing file; None falls back to $env_var, then the default name.

    A path that does not exist, given or from $env_var, is a UsageError (exit 2) that says where it came
    from; a known name whose file is not there yet is a WeightsNotFoundError whose hint says how to get it."""
    source = ""
    if spec is None and env_var:
        spec = os.environ.get(env_var) or None
        source = f" (from ${env_var})" if spec is not None else ""
    if spec is None:
        if default is None:
            raise UsageError("no weights given")
        spec = default
    if spec in KNOWN:
        p = path_of(spec)
        if not p.exists():
            e = _missing(spec)
            raise WeightsNotFoundError(e.message + source, e.hint)
        return p
    p = Path(spec).expanduser()
    if not p.exists():
        hint = f"pass a path or one of: {', '.join(KNOWN)} (see `unseg weights list`)"
        if source:
            hint = f"unset ${env_var} or point it at an existing file; " + hint
        raise UsageError(f"weights file not found: {p}{source}", hint)
    if p.is_dir():
        raise UsageError(f"weights {p}{source} is a folder, not a checkpoint file")
    return p


def sha256_of(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()
