"""The training-free methods per image: unseg (torch fp32, OpenVINO fp32/bf16, torch bf16) against an
official-style loop on the same images, in interleaved rounds.

The official-style loops are written from the official TokenCut, CutLER, CuVLER and LOST code's structure, not
copied: DINO's explicit attention, a forward hook on the last block's qkv registered per image, the full
forward; LOST (``object_discovery.lost``): the float32 ``A = k kᵀ``, degrees by ``torch.argsort``, the
expansion over the 100 lowest-degree patches and ``scipy.ndimage.label`` (no eigensolver: the forward is
nearly all of its cost); TokenCut/MaskCut: per cut a float64 dense graph and ``scipy.linalg.eigh(D - A, D,
subset_by_index=[1, 2])`` (O(N³)), the mean split, the seed/corner rules and ``scipy.ndimage.label``;
VoteCut: per backbone CuVLER's ncut (``torch.linalg.eigh`` of the dense float64 normalised Laplacian, all
eigenpairs; ``votecut/ncut.py``), then unseg's own k-means and vote on both sides (a few ms). Random weights of
the real shapes: the graph size and the ViT's shape, not the weights, set the cost (speed does not depend on
weights). Deviation columns compare each unseg variant with unseg torch fp32: the keys (max relative
difference) and the label maps (images whose labels are identical).

    python benchmarks/spectral_speed.py                 # TokenCut S/8 500x375 x3, MaskCut B/8 480² x2, VoteCut x1,
                                                        # LOST S/16 500x375 x3
    python benchmarks/spectral_speed.py --n-votecut 0   # without VoteCut (its official loop: ~2 min per image)
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import generated_images, machine

from unsegcli.config import BackboneConfig
from unsegcli.io.images import decode_image
from unsegcli.methods import method_options
from unsegcli.methods.spectral.predictor import SpectralPredictor, upsample_labels
from unsegcli.methods.spectral.votecut import VoteCutPredictor, instance_map, kmeans_1d, proposals, vote
from unsegcli.model.backbone import build_vit
from unsegcli.model.dino_keys import final_tokens, is_dinov2
from unsegcli.model.forward import openvino_installed
from unsegcli.runtime import cpu_native_bf16

SHAPES = {
    "vits8": BackboneConfig("", 8, 384, 12, 6),
    "vitb8": BackboneConfig("", 8, 768, 12, 12),
    "vits16": BackboneConfig("", 16, 384, 12, 6),
    "vitb16": BackboneConfig("", 16, 768, 12, 12),
    "v2-vits14": BackboneConfig("", 14, 384, 12, 6, img_size=518),
    "v2-vitb14": BackboneConfig("", 14, 768, 12, 12, img_size=518),
}
# CuVLER's six backbones, in its order (create_pseudo_masks.py --models dino_s16 dinov2_b14 dinov2_s14 dino_b16
# dino_s8 dino_b8)
VOTECUT_SHAPES = ("vits16", "v2-vitb14", "v2-vits14", "vitb16", "vits8", "vitb8")


def official_keys(vit, x: torch.Tensor) -> torch.Tensor:
    """Full forward with a qkv hook registered for this image (and never removed, as main_tokencut.py)."""
    out = {}
    vit.blocks[-1].attn.qkv.register_forward_hook(lambda m, i, o: out.__setitem__("qkv", o))
    with torch.no_grad():
        tokens = vit.patch_embed.proj(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([vit.cls_token.expand(1, -1, -1), tokens], 1)
        from unsegcli.model.backbone import dino_pos_embed

        p = vit.patch_embed.proj.kernel_size[0]
        tokens = tokens + dino_pos_embed(vit.pos_embed, x.shape[2] // p, x.shape[3] // p)
        for blk in vit.blocks:
            tokens = blk(tokens)
        vit.norm(tokens)
    b, t, _ = out["qkv"].shape
    qkv = out["qkv"].reshape(b, t, 3, vit.blocks[-1].attn.num_heads, -1).permute(2, 0, 3, 1, 4)
    return qkv[1].transpose(1, 2).reshape(b, t, -1)[0, 1:]


def official_cut(feats: torch.Tensor, dims: tuple[int, int], tau: float, corners: bool, painted=None):
    """One official NCut: -> (patch mask of the seed's component, eigen time)."""
    from scipy import ndimage
    from scipy.linalg import eigh

    f = torch.nn.functional.normalize(feats, p=2, dim=1)
    a = (f @ f.T).numpy() > tau
    a = np.where(a.astype(float) == 0, 1e-5, a)
    d = np.diag(a.sum(1))
    t = time.perf_counter()
    v = eigh(d - a, d, subset_by_index=[1, 2])[1][:, 0]
    t_eig = time.perf_counter() - t
    bip = v > v.sum() / len(v)
    seed = int(np.argmax(np.abs(v)))
    if corners:
        g = bip.reshape(dims)
        reverse = int(g[0, 0]) + int(g[0, -1]) + int(g[-1, 0]) + int(g[-1, -1]) >= 3 or not bip[seed]
        bip, seed = (~bip, int(np.argmax(-v))) if reverse else (bip, int(np.argmax(v)))
    elif not bip[seed]:
        bip = ~bip
    objects, _ = ndimage.label(bip.reshape(dims))
    return objects == objects[np.unravel_index(seed, dims)], t_eig


def official_lost(keys: torch.Tensor, dims: tuple[int, int], k_patches: int) -> np.ndarray:
    """LOST per image (valeoai/LOST object_discovery.py lost, patch_scoring, detect_box) -> the patch mask of the
    seed's component, uint8."""
    from scipy import ndimage

    a = keys @ keys.T  # raw dot products, float32
    positive = a.clone()
    positive.fill_diagonal_(0)
    positive[positive < 0] = 0
    degree = -torch.sum(positive > 0, dim=1).type(torch.float32)
    order = torch.argsort(degree, descending=True)  # not stable, as the official call: ties are torch's
    seed = order[0]
    candidates = order[:k_patches]
    similar = candidates[a[seed, candidates] > 0]
    expanded = torch.sum(a[similar, :], dim=0)
    objects, _ = ndimage.label(expanded.reshape(dims).numpy() > 0)
    return (objects == objects[np.unravel_index(int(seed), dims)]).astype(np.uint8)


def official_maskcut(feats: torch.Tensor, dims: tuple[int, int], tau: float, n: int):
    masks, prev, painted, t_eig = [], None, np.zeros(dims, bool), 0.0
    for i in range(n):
        if i:
            painted |= prev
            feats = feats * torch.from_numpy(~painted.ravel())[:, None].float()
        m, t = official_cut(feats, dims, tau, corners=True)
        t_eig += t
        if i:
            inter, union = (prev & m).sum(), (prev | m).sum()
            if (union and inter / union > 0.5) or m.mean() <= 0.01:
                m = np.zeros(dims, bool)
        prev = m
        masks.append(m)
    out = np.zeros(dims, np.uint8)
    k = 0
    for m in masks:
        new = m & (out == 0)
        if new.any():
            k += 1
            out[new] = k
    return out, t_eig


def box(mask: np.ndarray) -> tuple[int, ...]:
    ys, xs = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
    return (int(xs[0]), int(ys[0]), int(xs[-1]) + 1, int(ys[-1]) + 1) if len(xs) else ()


def weights_file(shape: str, folder: Path) -> Path:
    """Random weights of ``shape`` saved as the official file layout (DINOv2's: with LayerScale)."""
    torch.manual_seed(0)
    path = folder / f"{shape}.pth"
    if not path.exists():
        torch.save(build_vit(SHAPES[shape], layer_scale=shape.startswith("v2-")).state_dict(), path)
    return path


def official_vit(path: Path):
    from unsegcli.model.dino_keys import load_dino_vit

    return load_dino_vit(path, explicit_attention=True)  # DINO's explicit softmax(q kᵀ) attention


def variants() -> list[tuple[str, dict]]:
    out = [("torch fp32", dict(engine="torch", precision="fp32"))]
    if openvino_installed():
        out.append(("openvino fp32", dict(engine="openvino", precision="fp32")))
    if cpu_native_bf16():
        if openvino_installed():
            out.append(("openvino bf16", dict(engine="openvino", precision="bf16")))
        out.append(("torch bf16", dict(engine="torch", precision="bf16")))
    return out


def labels_of(out) -> np.ndarray:
    return np.asarray(out[0] if isinstance(out, tuple) else out)


def official_votecut(vits, sizes, img, opts) -> np.ndarray:
    """CuVLER per image: per backbone the features, ncut's dense float64 eigh of L; then the vote (unseg's)."""
    from unsegcli.model.dino_keys import preprocess

    labellings = []
    for vit, size in zip(vits, sizes, strict=True):
        x = preprocess(img, "fixed", 1, size)[0][None]
        with torch.no_grad():
            if is_dinov2(vit):
                feats = final_tokens(vit, x, "size")[0]
            else:
                feats = official_keys(vit, x)
        f = torch.nn.functional.normalize(feats, p=2, dim=-1)
        a = (f @ f.T > opts.tau).double()
        a = torch.where(a == 0, torch.full_like(a, opts.eps), a)
        d = a.sum(1)
        inv = torch.diag(d.pow(-0.5))
        lap = inv @ (torch.diag(d) - a) @ inv
        u = torch.linalg.eigh(lap, UPLO="L")[1][:, 1].numpy()
        g = int(round(len(u) ** 0.5))
        labellings += [kmeans_1d(u, k).reshape(g, g) for k in (2, 3)]
    voted = vote(proposals(labellings), opts.tau_m, opts.cluster_iou, opts.max_objects)
    return labels_of(instance_map(voted, img.shape[:2]))


def run(method: str, shapes: tuple[str, ...], paths: list[Path], folder: Path) -> dict:
    """Interleaved per image: the official-style loop, then every unseg variant. -> per variant the median
    s/image, and the deviations from unseg torch fp32."""
    weights = [weights_file(s, folder) for s in shapes]
    opts = method_options(method)
    preds = {}
    for name, kw in variants():
        t = time.perf_counter()
        if method == "votecut":
            preds[name] = VoteCutPredictor(method, opts, backbone=tuple(map(str, weights)), **kw)
        else:
            preds[name] = SpectralPredictor(method, opts, backbone=weights[0], **kw)
        first = decode_image(str(paths[0]))
        preds[name].run([preds[name].prepare(0, first)])  # warm-up; OpenVINO: the export (cached) and compile
        print(f"  {method} {name}: set-up + first image {time.perf_counter() - t:.1f} s", file=sys.stderr)
    off_vits = [official_vit(w) for w in weights]
    times: dict[str, list[float]] = {"official": []} | {n: [] for n in preds}
    same_labels = {n: 0 for n in preds}
    key_dev = {n: 0.0 for n in preds}
    boxes_equal = 0
    for idx, path in enumerate(paths):
        img = decode_image(str(path))
        t0 = time.perf_counter()
        if method == "votecut":
            off = official_votecut(off_vits, preds["torch fp32"].sizes, img, opts)
        else:
            p_off = preds["torch fp32"].prepare(idx, img)  # the same geometry code (pad / LANCZOS 480²)
            keys = official_keys(off_vits[0], p_off.tensor[None])
            p = preds["torch fp32"].patch_size
            grid = (p_off.tensor.shape[1] // p, p_off.tensor.shape[2] // p)
            if method == "tokencut":
                lab = official_cut(keys, grid, opts.tau, corners=False)[0].astype(np.uint8)
            elif method == "lost":
                lab = official_lost(keys, grid, opts.k_patches)
            else:
                lab = official_maskcut(keys, grid, opts.tau, opts.max_objects)[0]
            off = upsample_labels(lab, opts.geometry, p, p_off.resized, p_off.original)
        times["official"].append(time.perf_counter() - t0)
        outs = {}
        for name, pred in preds.items():
            t = time.perf_counter()
            outs[name] = labels_of(pred.run([pred.prepare(idx, img)])[0])
            times[name].append(time.perf_counter() - t)
        ref = outs["torch fp32"]
        top = int(max(off.max(), ref.max()))
        boxes_equal += all(box(off == j) == box(ref == j) for j in range(1, top + 1))
        for name, pred in preds.items():
            same_labels[name] += int(np.array_equal(outs[name], ref))
            if method != "votecut":
                x = pred.prepare(idx, img).tensor[None]
                k_ref, k = preds["torch fp32"].keys(x), pred.keys(x)
                key_dev[name] = max(key_dev[name], float((k - k_ref).abs().max() / k_ref.abs().max()))
        print(
            f"  {method} image {idx}: official {times['official'][-1]:.2f} s | "
            + " | ".join(f"{n} {times[n][-1]:.2f} s" for n in preds),
            file=sys.stderr,
        )
    return {
        "median": {n: statistics.median(v) for n, v in times.items()},
        "same_labels": same_labels,
        "key_dev": key_dev,
        "boxes_equal": boxes_equal,
        "images": len(paths),
        "votecut": method == "votecut",
    }


def voc_landscape(folder: Path, n: int) -> list[Path]:
    """``n`` generated 500x375 (landscape, VOC's commonest size) images."""
    paths = generated_images(folder, 3 * n)
    return [p for p in paths if decode_image(str(p)).shape[1] == 500][:n]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-tokencut", type=int, default=3)
    ap.add_argument("--n-maskcut", type=int, default=2)
    ap.add_argument("--n-votecut", type=int, default=1)
    ap.add_argument("--n-lost", type=int, default=3)
    args = ap.parse_args()
    print(machine(), f"torch threads {torch.get_num_threads()}", file=sys.stderr)
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"load before: {load}")
    folder = Path(tempfile.mkdtemp())
    cases = []
    if args.n_tokencut:
        cases.append(
            ("TokenCut, ViT-S/8, 500x375 padded (2961 patches)", "tokencut", ("vits8",),
             voc_landscape(folder / "voc", args.n_tokencut))
        )  # fmt: skip
    if args.n_maskcut:
        paths = generated_images(folder / "mc", args.n_maskcut, seed=1)
        cases.append(("MaskCut, ViT-B/8, 480x480 (3600 patches), 3 objects", "maskcut", ("vitb8",), paths))
    if args.n_votecut:
        paths = generated_images(folder / "vc", args.n_votecut, seed=2)
        cases.append(("VoteCut, CuVLER's 6 backbones at 480 (2x 3600, 2x 1156, 2x 900 patches)", "votecut",
                      VOTECUT_SHAPES, paths))  # fmt: skip
    if args.n_lost:
        cases.append(
            ("LOST, ViT-S/16, 500x375 padded (768 patches)", "lost", ("vits16",),
             voc_landscape(folder / "lost", args.n_lost))
        )  # fmt: skip
    rows = []
    for title, method, shapes, paths in cases:
        r = run(method, shapes, paths, folder)
        off = r["median"]["official"]
        for name, t in r["median"].items():
            if name == "official":
                rows.append(f"| {title} | official-style loop | {r['images']} | {t:.2f} | 1.0x | | | |")
                continue
            dev = "" if r["votecut"] else f"{r['key_dev'][name]:.1e}"
            boxes = f"{r['boxes_equal']}/{r['images']}" if name == "torch fp32" else ""
            rows.append(
                f"| | unseg {name} | {r['images']} | {t:.2f} | **{off / t:.1f}x** | {dev} | "
                f"{r['same_labels'][name]}/{r['images']} | {boxes} |"
            )
    print(f"load after: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    print(
        "| case | run | images | median s/image | vs official | keys max rel diff vs torch fp32 | "
        "labels = torch fp32 | boxes = official |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
