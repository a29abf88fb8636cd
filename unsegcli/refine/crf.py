"""Dense CRF refinement as CutLER's MaskCut runs it (``maskcut/crf.py``), through the
optional ``pydensecrf2`` package (a maintained fork of pydensecrf that builds on current Python and numpy 2; it
installs the same ``pydensecrf`` module). Imported only when used."""

from __future__ import annotations

from types import ModuleType

import numpy as np

from ..errors import UsageError

INSTALL_HINT = "pip install 'unseg[crf]'  (builds pydensecrf2; needs a C++ compiler)"

# CutLER maskcut/crf.py constants
MAX_ITER = 10
POS_W = 7
POS_XY_STD = 3
BI_W = 10
BI_XY_STD = 50
BI_RGB_STD = 5


def require_crf() -> ModuleType:
    """The pydensecrf module, or a UsageError naming the install command."""
    try:
        import pydensecrf.densecrf as dcrf
    except ImportError:
        raise UsageError(
            "the dense CRF refiner needs the optional package pydensecrf2, which is not installed", hint=INSTALL_HINT
        ) from None
    return dcrf


def crf_available() -> bool:
    try:
        require_crf()
    except UsageError:
        return False
    return True


def dense_crf(
    image: np.ndarray,
    mask: np.ndarray,
    iterations: int = MAX_ITER,
    pos_w: float = POS_W,
    pos_xy_std: float = POS_XY_STD,
    bi_w: float = BI_W,
    bi_xy_std: float = BI_XY_STD,
    bi_rgb_std: float = BI_RGB_STD,
) -> np.ndarray:
    """HxWx3 uint8 RGB + HxW mask in [0, 1] at the same size -> HxW bool MAP labelling (foreground = label 1).

    CutLER's unary: softmax of the logits [1 − m, m], so p(fg) = sigmoid(2m − 1): 0.7311 on a {0, 1} mask's
    foreground, a deliberately weak prior that the pairwise terms can overturn; U = −log(clip(p, 1e-5, 1))
    (pydensecrf.utils.unary_from_softmax). Gaussian and bilateral kernels with Potts compatibility."""
    dcrf = require_crf()
    h, w = mask.shape
    fg = 1.0 / (1.0 + np.exp(-(2.0 * mask.astype(np.float64) - 1.0)))
    probs = np.stack([1.0 - fg, fg]).reshape(2, -1)
    unary = np.ascontiguousarray(-np.log(np.clip(probs, 1e-5, 1.0)).astype(np.float32))
    crf = dcrf.DenseCRF2D(w, h, 2)
    crf.setUnaryEnergy(unary)
    crf.addPairwiseGaussian(sxy=pos_xy_std, compat=pos_w)
    # pydensecrf takes a writable C-contiguous buffer: a read-only image (np.asarray of a PIL image, Ray Data's
    # arrays) is copied, as CuVLER's mask_post_processing copies its image
    rgb = np.require(image, requirements=("C_CONTIGUOUS", "WRITEABLE"))
    crf.addPairwiseBilateral(sxy=bi_xy_std, srgb=bi_rgb_std, rgbim=rgb, compat=bi_w)
    q = np.asarray(crf.inference(iterations))
    return np.argmax(q, axis=0).reshape(h, w) == 1
