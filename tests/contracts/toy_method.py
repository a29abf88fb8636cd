"""A toy method declared outside the package, as a new method would be: one options class, one objective, one
checkpoint family with its predictor, and one table entry (``ENTRY``). Nothing in ``unsegcli`` names it;
``test_new_method.py`` adds ``ENTRY`` to the method table and runs train -> resume -> predict -> boxes.

The toy segmenter is a 3x3 convolution and a 1x1 convolution trained to call bright pixels foreground.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from unsegcli.config import PreprocessConfig, checked_fields, option
from unsegcli.engine.config import TrainConfig, WeightSources
from unsegcli.engine.data import CropDataset
from unsegcli.engine.objective import StepContext, StepOutput
from unsegcli.engine.predictor import Prepared
from unsegcli.io.images import normalize
from unsegcli.methods import Method, Training
from unsegcli.model.checkpoint import checkpoint_dict

NAME = "toy"


@dataclass(frozen=True)
class ToyOptions:
    width: int = option(4, "Toy: hidden channels.", min=1, max=64, cite="none: a test method")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ToyOptions:
        return cls(**checked_fields(cls, data))


@dataclass(frozen=True)
class ToyConfig:
    width: int = 4

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ToyNet(torch.nn.Module):
    def __init__(self, cfg: ToyConfig):
        super().__init__()
        self.cfg = cfg
        self.body = torch.nn.Sequential(
            torch.nn.Conv2d(3, cfg.width, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(cfg.width, 1, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def image_tensor(image: np.ndarray, prep: PreprocessConfig) -> torch.Tensor:
    return normalize(torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255.0, prep.mean, prep.std)


class ToyPredictor:
    kind = "soft"

    def __init__(self, model: ToyNet, prep: PreprocessConfig, device: torch.device):
        self.model, self.prep, self.device = model.eval().to(device), prep, device

    def prepare(self, index: int, image: np.ndarray) -> Prepared:
        return Prepared(index, image_tensor(image, self.prep), image.shape[:2], image.shape[:2])

    @torch.inference_mode()
    def run(self, batch: Sequence[Prepared]) -> list[np.ndarray]:
        x = torch.stack([p.tensor for p in batch if p.tensor is not None]).to(self.device)
        return list(torch.sigmoid(self.model(x))[:, 0].cpu().numpy())


# the checkpoint family: this module (the table's `family`)
def config_from_dict(data: dict[str, Any]) -> ToyConfig:
    return ToyConfig(**checked_fields(ToyConfig, data))


def build(cfg: ToyConfig) -> ToyNet:
    return ToyNet(cfg)


def predictor(model: ToyNet, prep: PreprocessConfig, device: torch.device, precision: str, compile: bool, **_: Any):
    return ToyPredictor(model, prep, device)


class ToyObjective:
    name: ClassVar[str] = NAME
    needs_masks: ClassVar[bool] = False
    batches_per_step = 1

    def __init__(self, cfg: TrainConfig, net: ToyNet):
        self.cfg, self.net = cfg, net
        self.opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)

    @classmethod
    def create(cls, cfg: TrainConfig, sources: WeightSources, device: torch.device) -> ToyObjective:
        return cls(cfg, ToyNet(ToyConfig(cfg.options.width)).to(device))

    @classmethod
    def dataset(cls, cfg: TrainConfig, images: list[str], masks: list[str] | None) -> CropDataset:
        return CropDataset(images, cfg.crop, cfg.seed)

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"segmenter": self.net}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"segmenter": self.opt}

    def export(self, meta: dict[str, Any]) -> dict[str, Any]:
        return checkpoint_dict(self.net, self.cfg.preprocess, meta, family=NAME)

    def step(self, batches: Sequence[Any], step: int, ctx: StepContext) -> StepOutput:
        (x,) = batches
        target = (x.mean(1, keepdim=True) > 0).float()  # brighter than the ImageNet mean
        with ctx.autocast():
            logits = self.net(x).float()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
        self.opt.zero_grad(set_to_none=True)
        ctx.backward(loss, "segmenter")
        ctx.step("segmenter")
        return StepOutput({"loss": loss.item()}, {"input": x, "mask": torch.sigmoid(logits.detach())})


ENTRY = Method(
    "checkpoint",
    "a toy method of the test suite",
    family=__name__,
    training={NAME: Training(f"{__name__}:ToyObjective", f"{__name__}:ToyOptions")},
)
