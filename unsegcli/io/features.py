"""Feature files of the GPU/CPU stage split (``unseg predict --save-features``, then ``--from-features``).

One safetensors file per image, named as its mask with the ``.safetensors`` extension (``a/b.jpg`` ->
``a/b.safetensors``), written atomically. Tensors: what the GPU stage computed (the backbone's keys or tokens,
float32, as the one-stage run feeds them to the cuts); metadata (safetensors' string map):

- ``unseg-features``: JSON of the settings the features depend on (method, backbone identity, and the options
  that shape them: geometry, size, attention), which the CPU stage checks before it cuts;
- ``unseg-geometry``: JSON of what bringing a mask back to the image needs (original size, content size, grids);
- ``unseg``: the settings tag of those settings (``io.masks.settings_tag``), read to refuse resuming a folder of
  features made with other settings.
"""

from __future__ import annotations

import json
import os
import posixpath
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InputError

FEATURES_EXT = ".safetensors"
SETTINGS_KEY = "unseg-features"
GEOMETRY_KEY = "unseg-geometry"
TAG_KEY = "unseg"
_MAX_HEADER = 100_000_000  # safetensors' own limit on the JSON header


@dataclass
class FeatureRecord:
    """One image's features: named float arrays, its geometry, and (once read) the settings they were made with."""

    tensors: dict[str, np.ndarray]
    geometry: dict[str, Any]
    settings: dict[str, Any] = field(default_factory=dict)


def features_path_for(rel: str) -> str:
    """The feature file of an input at relative path ``rel`` (``a/b.jpg`` -> ``a/b.safetensors``)."""
    return posixpath.splitext(rel)[0] + FEATURES_EXT


def encode_features(record: FeatureRecord, settings: dict[str, Any], tag: str | None) -> bytes:
    from safetensors.numpy import save

    meta = {SETTINGS_KEY: json.dumps(settings, sort_keys=True), GEOMETRY_KEY: json.dumps(record.geometry)}
    if tag is not None:
        meta[TAG_KEY] = tag
    return save({k: np.ascontiguousarray(v) for k, v in record.tensors.items()}, metadata=meta)


def _header(path: str) -> dict[str, Any]:
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise ValueError("shorter than a safetensors header")
        (n,) = struct.unpack("<Q", head)
        if n > _MAX_HEADER:
            raise ValueError("header too large")
        return json.loads(f.read(n))


def read_features_tag(path: str) -> str | None:
    """The settings tag of a feature file (None: untagged or unreadable), from its header only."""
    try:
        return _header(path).get("__metadata__", {}).get(TAG_KEY)
    except (OSError, ValueError, AttributeError):
        return None


def read_features(path: str, max_pixels: int | None = None) -> FeatureRecord:
    """A feature file -> its record; anything unreadable is an InputError naming it. (``max_pixels`` is not
    used: the signature of ``io.images.decode_image``, which this replaces in the CPU stage.)"""
    from safetensors.numpy import load_file

    try:
        meta = _header(path).get("__metadata__") or {}
        tensors = load_file(path)
        settings = json.loads(meta[SETTINGS_KEY])
        geometry = json.loads(meta[GEOMETRY_KEY])
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except KeyError:
        raise InputError(f"{path}: not a feature file of `unseg predict --save-features`") from None
    except Exception as e:  # noqa: BLE001 - safetensors and json raise many types for a damaged file
        raise InputError(f"{path}: not a readable feature file ({type(e).__name__}: {e})") from None
    return FeatureRecord(tensors, geometry, settings)


def differences(found: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """'name: found X, this run Y' for each setting that differs."""
    return [f"{k} {found.get(k)!r} (this run: {wanted.get(k)!r})" for k in sorted(wanted) if found.get(k) != wanted[k]]


def check_features(path: str, wanted: dict[str, Any]) -> FeatureRecord:
    """``read_features`` and an InputError naming the file and the settings when they are not ``wanted``."""
    record = read_features(path)
    diff = differences(record.settings, wanted)
    if diff:
        raise InputError(f"{path}: features made with other settings: {'; '.join(diff)}")
    return record


def is_feature_file(path: str | os.PathLike) -> bool:
    return str(path).endswith(FEATURES_EXT)
