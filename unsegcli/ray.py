"""Ray Data integration (``pip install 'unseg[ray]'``): pseudo-labelling on a Ray cluster, outside Slurm.

Two callable classes for ``Dataset.map_batches``, each a thin layer over what ``unseg predict`` and ``unseg boxes``
run, so a row's labels equal theirs on the same image (docs/ray.md)::

    import ray, unsegcli.ray as ur
    (ray.data.read_binary_files("imgs/", include_paths=True, file_extensions=ur.IMAGE_EXTENSIONS)  # bytes
        .map_batches(ur.MaskPredictor, fn_constructor_kwargs={"method": "tokencut", "root": "imgs/"},
                     batch_size=16, num_gpus=1, compute=ray.data.ActorPoolStrategy(size=8))
        .map_batches(ur.Boxes(multi=True))    # an instance: it holds no model, so it runs as tasks
        .write_parquet("labels/"))
    # then: unseg merge labels/*.parquet --out pseudo.json   (or --format yolo / voc / jsonl ...)

- ``MaskPredictor``: loads the model once per actor; per batch (``bytes`` and ``path`` columns of
  ``read_binary_files(include_paths=True)``, decoded as ``unseg predict`` decodes: EXIF orientation applied, 16-bit
  scaled, a corrupt file named in its row; or ``image`` and ``path`` of ``read_images(include_paths=True,
  mode="RGB")``, decoded by Ray: no EXIF orientation, and a corrupt file fails Ray's read task) it prepares
  each image, runs images of equal input shape together
  (``engine.predictor.bucketed``, as ``unseg predict --batch-size``) and returns ``key``, ``height``, ``width``,
  ``mask`` (the PNG bytes ``unseg predict`` writes: 8-bit soft mask, or palette instance map with its scores),
  ``settings`` (the settings tag ``unseg predict`` records) and ``error`` ("" when it did not fail).
- ``Boxes``: the box step of ``unseg boxes`` on those masks: one row per image with list columns
  (``labels.rows``: boxes xywh, areas, scores, COCO RLE counts), which ``unseg merge`` turns into every format.

An image that fails (too many patches for a spectral method, a mask that cannot be read) keeps its row, with
``error`` set and no labels: ``unseg merge`` names it and exits 1. Neither class imports Ray (they are plain
callables on dicts of numpy columns); ``pseudo_labels`` builds the whole pipeline and needs it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from .errors import InputError, UnsegError, UsageError
from .io.images import IMAGE_EXTENSIONS as _EXTS
from .labels.components import DEFAULT_MIN_AREA, Connectivity

__all__ = ["IMAGE_EXTENSIONS", "Boxes", "MaskPredictor", "pseudo_labels"]

# the files `unseg predict` reads from a folder, as Ray's ``file_extensions`` takes them (it ignores case)
IMAGE_EXTENSIONS = [e.lstrip(".") for e in _EXTS]


def image_key(path: str, root: str | None) -> str:
    """The name an image's labels carry (COCO ``file_name``): its path relative to ``root`` (as ``unseg predict
    --root``), else its file name. Ray's ``path`` column holds a local path absolute and a URL without its
    scheme (``s3://b/x.jpg`` -> ``b/x.jpg``), a local path as it was given (relative or absolute): ``root`` is
    compared in the same form. A path outside ``root`` is an InputError."""
    full = path.split("://", 1)[-1]
    if root is None:
        return full.rsplit("/", 1)[-1]
    if "://" in root:
        base = root.split("://", 1)[1].rstrip("/")
    else:  # a local root: read_images keeps a relative path relative, an absolute one absolute
        base, full = os.path.normpath(root), os.path.normpath(full)
        if os.path.isabs(base) != os.path.isabs(full):
            base, full = os.path.abspath(base), os.path.abspath(full)
    if not full.startswith(base + "/"):
        raise InputError(f"{path}: not under the root {root}")
    return full[len(base) + 1 :]


def _rgb(image: Any) -> np.ndarray:
    """A decoded image of ``read_images`` -> HxWx3 uint8 (gray repeated, alpha dropped as Pillow's RGB does)."""
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise InputError(f"image of dtype {a.dtype}, not uint8 (read_images(..., mode='RGB') gives uint8)")
    if a.ndim == 2:
        return np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise InputError(f"image of shape {a.shape}, not HxW or HxWx(1, 3, 4)")
    return np.ascontiguousarray(np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a[:, :, :3])


def _column(values: Sequence[Any], dtype: Any = object) -> np.ndarray:
    out = np.empty(len(values), dtype=dtype)
    out[:] = values
    return out


class MaskPredictor:
    """``unseg predict`` as a Ray Data stage: ``method`` and ``weights`` as ``unsegcli.load`` takes them (a
    training-free method with ``backbone`` and its ``options``; "move" with a checkpoint in ``weights``),
    ``device`` ("auto": CUDA where Ray gave the actor a GPU), ``root``: the image root keys are relative to
    (default: the file name), ``batch_size``: images of equal input shape that share a forward pass (it never
    changes a mask), ``max_pixels``: the largest image decoded from ``bytes`` (``unseg predict --max-pixels``).
    Call it on a batch with ``bytes`` (or ``image``) and ``path`` columns (module docstring)."""

    def __init__(
        self,
        method: str = "move",
        *,
        weights: str | None = None,
        backbone: str | None = None,
        device: str = "auto",
        root: str | None = None,
        batch_size: int = 8,
        max_pixels: int | None = None,
        **options: Any,
    ) -> None:
        from . import api
        from .pipelines.predict import prediction_settings

        if weights is not None and method != "move":
            raise UsageError(f"weights names a checkpoint (method move); method {method} takes backbone")
        self.model = api.load(weights if weights is not None else method, backbone=backbone, device=device, **options)
        self.tag = prediction_settings(self.model.request)[1]
        self.root = root
        self.batch_size = batch_size
        self.max_pixels = max_pixels

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, np.ndarray]:
        from .engine.predict import encode_output
        from .engine.predictor import Prepared, bucketed
        from .io.images import decode_image_bytes

        predictor = self.model.predictor
        paths = [str(p) for p in batch["path"]]
        raw = "bytes" in batch
        keys: list[str] = []
        sizes: list[tuple[int, int]] = []
        errors: list[str] = []
        prepared: list[Prepared] = []
        for i, (path, image) in enumerate(zip(paths, batch["bytes" if raw else "image"], strict=True)):
            key, size, error = path, (0, 0), ""
            try:
                key = image_key(path, self.root)
                rgb = decode_image_bytes(bytes(image), path, self.max_pixels) if raw else _rgb(image)
                size = (int(rgb.shape[0]), int(rgb.shape[1]))
                prepared.append(predictor.prepare(i, rgb))
            except UnsegError as e:
                error = e.message if path in e.message else f"{path}: {e.message}"
            keys.append(key)
            sizes.append(size)
            errors.append(error)
        masks: list[bytes | None] = [None] * len(paths)
        for group in bucketed(prepared, self.batch_size):
            for item, out in zip(group, predictor.run(group), strict=True):
                masks[item.index] = encode_output(predictor.kind, out, self.tag)
        return {
            "key": _column(keys),
            "height": np.array([h for h, _ in sizes], np.int64),
            "width": np.array([w for _, w in sizes], np.int64),
            "mask": _column(masks),
            "settings": _column([self.tag] * len(paths)),
            "error": _column(errors),
        }


class Boxes:
    """``unseg boxes`` as a Ray Data stage, on ``MaskPredictor``'s columns (``key``, ``mask``, ``settings``,
    ``error``): its options as ``unseg boxes`` takes them, except ``multi``, which defaults to every object
    (pseudo-labels for a detector). Returns one row per image (``labels.rows``)."""

    def __init__(
        self,
        multi: bool = True,
        min_area: float = DEFAULT_MIN_AREA,
        threshold: float = 0.5,
        connectivity: Connectivity = 8,
        min_score: float = 0.0,
        max_boxes: int | None = None,
        split_components: bool = False,
    ) -> None:
        from .labels.runner import BoxOptions

        self.options = BoxOptions(
            threshold, connectivity, min_area, multi, min_score, max_boxes, split_components=split_components
        )

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, np.ndarray]:
        from .labels.rows import COLUMNS, failed_row, labels_to_row
        from .labels.runner import label_png

        rows = []
        errors: Iterable[Any] = batch["error"] if "error" in batch else [""] * len(batch["key"])
        for key, mask, settings, error in zip(batch["key"], batch["mask"], batch["settings"], errors, strict=True):
            if error:
                rows.append(failed_row(str(key), str(error), str(settings)))
                continue
            try:
                rows.append(labels_to_row(label_png(bytes(mask), str(key), self.options, rle=True), str(settings)))
            except UnsegError as e:
                rows.append(failed_row(str(key), e.message, str(settings)))
        return {c: _column([r[c] for r in rows]) for c in COLUMNS}


def _require_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UsageError("Ray is not installed", "pip install 'unseg[ray]' (Ray Data and pyarrow)") from None
    return ray


def pseudo_labels(
    images: str | list[str],
    out: str,
    method: str = "move",
    *,
    root: str | None = None,
    concurrency: int = 1,
    num_gpus: float = 0,
    batch_size: int = 8,
    boxes: Mapping[str, Any] | None = None,
    **predictor: Any,
) -> None:
    """The whole pipeline: ``read_binary_files(images)`` -> ``MaskPredictor`` (``method``, ``predictor`` keywords;
    ``concurrency`` actors of ``num_gpus`` GPUs each) -> ``Boxes`` (``boxes`` keywords, as tasks) -> parquet parts in
    ``out`` (a folder or URL), for ``unseg merge OUT/*.parquet``. ``root`` defaults to ``images`` when it is one
    folder, so keys are relative paths as ``unseg predict`` names its masks."""
    ray = _require_ray()
    if root is None and isinstance(images, str):
        root = images
    ds = ray.data.read_binary_files(images, include_paths=True, file_extensions=IMAGE_EXTENSIONS)
    ds = ds.map_batches(
        MaskPredictor,
        fn_constructor_kwargs={"method": method, "root": root, "batch_size": batch_size, **predictor},
        batch_size=batch_size,
        compute=ray.data.ActorPoolStrategy(size=concurrency),
        num_gpus=num_gpus,
    )
    ds = ds.map_batches(Boxes(**(boxes or {})), batch_size=batch_size)  # no model to hold: tasks, not actors
    ds.write_parquet(out)
