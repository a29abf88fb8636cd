"""The Python API: what the commands do, as a few typed calls for notebooks and scripts.

Everything here is a thin layer over the library calls the commands make (``pipelines/``, ``engine/``,
``labels/``, ``evaluation/``), so a mask, a box or a CorLoc from here equals the command's. The guide is
docs/python-api.md. On the embedded demo checkpoint (CPU, offline):

>>> import numpy as np, unsegcli
>>> from unsegcli.synth import generate
>>> sample = generate(seed=0, index=0, size=96)          # an image with its known mask
>>> model = unsegcli.load()                              # the demo checkpoint ($UNSEG_WEIGHTS wins when set)
>>> (mask,) = model.predict([sample.image])              # HxW float32 in [0, 1], at the image's size
>>> mask.shape == sample.image.shape[:2], mask.dtype.name
(True, 'float32')
>>> found = unsegcli.boxes(mask)                         # the largest component's box, as `unseg boxes`
>>> truth = unsegcli.boxes(sample.mask)                  # the known mask's box
>>> from unsegcli.evaluation.corloc import iou_lost      # CorLoc's IoU: a hit at >= 0.5
>>> len(found), bool(iou_lost(np.array(found[0].xyxy), np.array([truth[0].xyxy]))[0] >= 0.5)
(1, True)

Other models load by name or path: ``load("tokencut")`` (DINO ViT-S/16 keys, once fetched with ``unseg
weights fetch dino-vits16``), ``load("maskcut", backbone="dinov2-vits14", max_objects=5)``,
``load("runs/x/last.pt")``, ``load("move-dino-vits8")``. Errors are ``unsegcli.errors.UnsegError``s whose
message names the parameter (``backbone``, ``weights``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .labels.components import DEFAULT_MIN_AREA, Component, Connectivity, extract_boxes, instance_components
from .methods import CHECKPOINT, predict_methods

if TYPE_CHECKING:
    from .config import Engine, Precision
    from .engine.predict import PredictSummary
    from .engine.predictor import MaskPredictor
    from .evaluation.corloc import CorLocResult
    from .io.datasets import DatasetName
    from .labels.formats import LabelFormat, Segmentation
    from .labels.runner import LabelCounts
    from .pipelines.predict import PredictRequest
    from .refine import RefineMethod, RefineOutput

Image = np.ndarray | str | Path  # an HxWx3 uint8 RGB array, or an image file
# a soft mask (HxW float in [0, 1]), or an instance map with its objects' scores (HxW uint8, 0 = background)
Mask = np.ndarray | tuple[np.ndarray, Mapping[int, float] | None]


def _ignore(message: str) -> None:
    return None


@dataclass
class Model:
    """A loaded segmenter: a checkpoint (MOVE, Sempart, self-trained) or a training-free method on its
    backbone. ``writes`` is ``"soft"`` (one soft mask per image) or ``"instances"`` (an instance map and
    its objects' scores). Make one with ``load``."""

    request: PredictRequest
    predictor: MaskPredictor

    @property
    def writes(self) -> str:
        return str(self.predictor.kind)

    def predict(self, images: Iterable[Image], batch_size: int = 1, max_pixels: int | None = None) -> list[Mask]:
        """One mask per image, at its original size (files as displayed: EXIF orientation applied):
        ``writes == "soft"``: HxW float32 in [0, 1]; ``"instances"``: (HxW uint8 label map, scores or None).
        Images of equal padded shape share a forward pass (``batch_size``), which never changes a mask. A model
        loaded with ``refine`` returns the refined mask (``refine.refine_mask``: float32 in [0, 1] for the
        ``soft`` output, uint8 {0, 1} for the others), as ``predict_files`` writes it."""
        from .engine.predict import soft_score
        from .engine.predictor import bucketed
        from .io.images import decode_image
        from .refine import refine_mask

        refine = self.request.post_refine()
        arrays: dict[int, np.ndarray] = {}  # the decoded images, while a mask waits for its refinement

        def prepared() -> Iterable[Any]:
            for i, image in enumerate(images):
                array = image if isinstance(image, np.ndarray) else decode_image(str(image), max_pixels)
                if refine is not None:
                    arrays[i] = array
                yield self.predictor.prepare(i, array)

        masks: dict[int, Mask] = {}
        for batch in bucketed(prepared(), batch_size):
            for item, mask in zip(batch, self.predictor.run(batch), strict=True):
                if self.writes != "soft":
                    masks[item.index] = mask
                    continue
                soft = soft_score(mask)[0]  # its score (TokenCut, LOST) is stored in the files predict_files writes
                masks[item.index] = soft if refine is None else refine_mask(soft, arrays.pop(item.index), refine)
        return [masks[i] for i in range(len(masks))]

    def predict_files(
        self,
        inputs: Sequence[str | Path],
        out: str | Path,
        *,
        overwrite: bool = False,
        batch_size: int = 1,
        workers: int = 0,
        on_error: Callable[[str], None] = _ignore,
    ) -> PredictSummary:
        """``unseg predict INPUTS --out OUT``: write one mask PNG per image (files or folders, recursive) to
        ``out``, named by the inputs' relative paths and tagged with the settings. Existing masks are skipped
        (a re-run resumes) unless ``overwrite``; a failed image goes to ``on_error`` and is counted."""
        from dataclasses import replace

        from .engine.predict import predict_files
        from .pipelines.predict import plan_prediction
        from .runtime import close_shard

        req = replace(self.request, overwrite=overwrite)
        plan = plan_prediction(req, [str(i) for i in inputs], out)
        try:
            return predict_files(
                self.predictor,
                plan.listing.items,
                out,
                shard=plan.shard,
                binary=req.binary,
                threshold=req.threshold,
                overwrite=overwrite,
                batch_size=batch_size,
                workers=workers,
                refine=req.post_refine(),
                tag=plan.tag,
                on_error=on_error,
                decode=plan.decode,
                settings=plan.settings,
            )
        finally:
            close_shard(plan.shard)


def load(
    name_or_path: str | Path | None = None,
    *,
    backbone: str | None = None,
    device: str = "auto",
    size: int | None = None,
    engine: Engine = "torch",
    precision: Precision = "fp32",
    refine: RefineMethod | None = None,
    refine_output: RefineOutput | None = None,
    **options: Any,
) -> Model:
    """A segmenter by method name, checkpoint path or known weights name, as ``unseg predict`` takes them.

    - ``None`` or ``"move"``: the checkpoint of ``$UNSEG_WEIGHTS``, else the embedded demo checkpoint;
    - ``"tokencut"``, ``"lost"``, ``"maskcut"``, ``"votecut"`` (``unseg predict --method``): the training-free
      method on ``backbone`` (a known name, a file or ``timm:NAME``; None = the method's own), with ``options``
      (its ``unseg predict`` options by field name: ``tau``, ``max_objects``, ``geometry``, ...);
    - anything else: a checkpoint file or known name (``"runs/x/last.pt"``, ``"move-dino-vits8"``), of any
      family (MOVE, Sempart); ``size`` overrides its stored input size, ``options`` may hold ``branch``.

    ``engine``, ``precision``, ``refine`` and ``refine_output`` are ``unseg predict``'s ``--engine`` (``"openvino"``:
    the ``openvino`` extra), ``--precision`` (``"bf16"`` on a CPU with native bf16), ``--refine`` and
    ``--refine-output``, checked as the command checks them; a method that refines by its own rule (FOUND's
    bilateral solver, VoteCut's CRF) applies it inside, the others after the mask.

    >>> load("tokencut", size=448)
    Traceback (most recent call last):
    ...
    unsegcli.errors.UsageError: size: options of checkpoints (method move), not of method tokencut
      hint: the training-free methods run at the size geometry gives
    """
    from .pipelines.predict import PredictRequest, load_request_predictor

    name = None if name_or_path is None else str(name_or_path)
    how: dict[str, Any] = {"engine": engine, "precision": precision, "refine": refine, "refine_output": refine_output}
    if name is not None and name != CHECKPOINT and name in predict_methods():
        given = {**options, "backbone": backbone} if backbone is not None else options
        req = PredictRequest(method=name, options=given, size=size, device=device, **how)
    else:
        weights = None if name == CHECKPOINT else name
        branch = options.pop("branch", None)
        extra = ", ".join(sorted(options)) + (", backbone" if backbone is not None else "")
        if extra.strip(", "):
            from .errors import UsageError

            raise UsageError(f"{extra.strip(', ')}: options of the training-free methods, not of a checkpoint")
        req = PredictRequest(method=CHECKPOINT, weights=weights, size=size, branch=branch, device=device, **how)
    return Model(req, load_request_predictor(req))


def boxes(
    mask: Mask,
    *,
    multi: bool = False,
    threshold: float = 0.5,
    min_area: float = DEFAULT_MIN_AREA,
    connectivity: Connectivity = 8,
) -> list[Component]:
    """The boxes ``unseg boxes`` finds in one mask, largest first: components of the mask binarised at
    ``threshold`` (or, for an instance map, one per object) whose box covers ``min_area`` of the image; only
    the largest unless ``multi``. Each ``Component`` has ``xyxy`` (0-based, exclusive end), ``area``
    (pixels) and ``score`` (the mean soft mask inside, or the object's stored score).

    A soft mask is a float array in [0, 1] or a uint8 PNG's values (0-255).

    >>> import numpy as np
    >>> m = np.zeros((10, 10), np.float32); m[2:5, 3:9] = 1.0
    >>> boxes(m)[0].xyxy, boxes(m)[0].area
    ((3.0, 2.0, 9.0, 5.0), 18)
    """
    from .io.masks import soft_to_uint8

    if isinstance(mask, tuple):
        labels, scores = mask
        comps, _, _ = instance_components(labels, min_area, False, connectivity, scores)
        return comps if multi else comps[:1]
    u8 = mask if mask.dtype == np.uint8 else soft_to_uint8(mask)
    return extract_boxes(u8, threshold, connectivity, min_area, multi=multi)[0]


def write_labels(
    masks: str | Path,
    out: str | Path,
    *,
    images: str | Path | None = None,
    format: LabelFormat = "coco",
    multi: bool = False,
    min_score: float = 0.0,
    segmentation: Segmentation = "rle",
    on_error: Callable[[str], None] = _ignore,
) -> LabelCounts:
    """``unseg boxes MASKS --images IMAGES --format FORMAT --out OUT``: a masks folder -> a label file or
    folder (docs/reference/formats.md). ``images``: the image root (file names relative to it, sizes
    checked; the ``yolo``, ``yolo-seg`` and ``voc`` folders link the images from it). A mask that fails goes
    to ``on_error`` and is counted in ``failed``; the others are written."""
    from .labels.runner import BoxOptions, label_files, plan_tasks

    root = None if images is None else str(images)
    plan = plan_tasks([str(masks)], root)
    opts = BoxOptions(multi=multi, min_score=min_score)
    return label_files(plan, str(out), format, opts, dirname=root or "", segmentation=segmentation, on_error=on_error)


def corloc(
    pred: str | Path,
    root: str | Path,
    dataset: DatasetName = "voc07",
    *,
    split: str = "trainval",
    on_error: Callable[[str], None] = _ignore,
) -> CorLocResult:
    """``unseg corloc DATASET --root ROOT --pred PRED`` for the VOC layouts: CorLoc (LOST/TokenCut protocol)
    of a masks folder or a box file against a VOC tree (``root``: VOCdevkit, or the year folder).
    ``result.corloc`` is the percentage; ``result.per_image`` holds (image id, best IoU, hit)."""
    from .evaluation.corloc import evaluate_corloc
    from .io.datasets import load_gt

    gt = load_gt(dataset, str(root), split, on_error=on_error)
    return evaluate_corloc(gt, str(pred), dataset, on_error=on_error)
