"""TokenCut and MaskCut per image: unseg's methods against an official-style loop on the same images.

The official-style loop is written from the official TokenCut and CutLER code's structure, not
copied: DINO's explicit attention, a forward hook on the last block's qkv registered per image, the
full forward, then per cut a float64 dense graph and ``scipy.linalg.eigh(D - A, D, subset_by_index=[1, 2])``
(O(N³)), the mean split, the seed/corner rules and ``scipy.ndimage.label``. Random weights of the real
shapes: the graph size, not the weights, sets the cost. Boxes of the two are compared as a parity check.

    python benchmarks/spectral_speed.py                 # TokenCut S/8 at 500x375 x2, MaskCut B/8 480² x1
    python benchmarks/spectral_speed.py --device cuda   # unseg side on the GPU (official side stays CPU)
"""

from __future__ import annotations

import argparse
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
from unsegcli.methods.spectral.predictor import CUTS, SpectralPredictor, upsample_labels
from unsegcli.model.backbone import build_vit
from unsegcli.model.dino_keys import last_block_keys

SHAPES = {"vits8": BackboneConfig("", 8, 384, 12, 6), "vitb8": BackboneConfig("", 8, 768, 12, 12)}


def official_keys(vit, x: torch.Tensor) -> torch.Tensor:
    """Full forward with a qkv hook registered for this image (and never removed, as main_tokencut.py)."""
    out = {}
    vit.blocks[-1].attn.qkv.register_forward_hook(lambda m, i, o: out.__setitem__("qkv", o))
    with torch.no_grad():
        tokens = vit.patch_embed.proj(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([vit.cls_token.expand(1, -1, -1), tokens], 1)
        from unsegcli.model.backbone import dino_pos_embed

        tokens = tokens + dino_pos_embed(vit.pos_embed, x.shape[2] // 8, x.shape[3] // 8)
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


def run(method: str, shape: str, paths: list[Path], device: str, batch: int) -> dict:
    torch.manual_seed(0)
    vit = build_vit(SHAPES[shape]).eval()
    folder = Path(tempfile.mkdtemp())
    weights = folder / f"dino_{shape}.pth"
    torch.save(vit.state_dict(), weights)
    opts = method_options(method)
    pred = SpectralPredictor(method, opts, backbone=weights, device=device)
    official_vit = build_vit(SHAPES[shape]).eval()
    official_vit.load_state_dict(vit.state_dict())
    for blk in official_vit.blocks:
        blk.attn.fused_attn = False  # DINO's explicit softmax(q kᵀ) attention
    rows = []
    images = [decode_image(str(p)) for p in paths]
    for idx, img in enumerate(images):
        # official-style, batch 1
        t0 = time.perf_counter()
        p_off = pred.prepare(idx, img)  # the same geometry code (pad / LANCZOS 480²)
        keys = official_keys(official_vit, p_off.tensor[None])
        t1 = time.perf_counter()
        grid = (p_off.tensor.shape[1] // 8, p_off.tensor.shape[2] // 8)
        if method == "tokencut":
            lab, t_eig = official_cut(keys, grid, opts.tau, corners=False)
            lab = lab.astype(np.uint8)
        else:
            lab, t_eig = official_maskcut(keys, grid, opts.tau, opts.max_objects)
        off_full = upsample_labels(lab, opts.geometry, 8, p_off.resized, p_off.original)
        t2 = time.perf_counter()
        # unseg (the predictor's own run(): keys, batched cut, upsampling), timed in parts
        t3 = time.perf_counter()
        p = pred.prepare(idx, img)
        x = p.tensor[None].to(pred.device)
        with torch.inference_mode():
            k = last_block_keys(pred.vit, x)
            if pred.device.type == "cuda":
                torch.cuda.synchronize()
            t4 = time.perf_counter()
            ours = CUTS[method](k, grid, opts)[0][0]
        ours_full = upsample_labels(ours, opts.geometry, 8, p.resized, p.original)
        t5 = time.perf_counter()
        same = [box(off_full == j) == box(ours_full == j) for j in range(1, max(off_full.max(), ours_full.max()) + 1)]
        rows.append(
            dict(
                official=t2 - t0,
                official_vit=t1 - t0,
                official_eig=t_eig,
                ours=t5 - t3,
                ours_vit=t4 - t3,
                ours_cut=t5 - t4,
                n=grid[0] * grid[1],
                boxes_equal=all(same),
            )
        )
        print(
            f"  {method} image {idx}: N={grid[0] * grid[1]} official {t2 - t0:.2f} s (ViT {t1 - t0:.2f}, eigh "
            f"{t_eig:.2f}) | unseg {t5 - t3:.2f} s (ViT {t4 - t3:.2f}, cut {t5 - t4:.2f}) | boxes equal {all(same)}",
            file=sys.stderr,
        )
    if batch > 1:  # the batched path (same-shape images together), per image
        prepared = [pred.prepare(i, img) for i, img in enumerate(images[:batch])]
        t = time.perf_counter()
        pred.run(prepared)
        rows[0]["batched_per_image"] = (time.perf_counter() - t) / len(prepared)
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k != "boxes_equal"} | {
        "boxes_equal": sum(r["boxes_equal"] for r in rows),
        "images": len(rows),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-tokencut", type=int, default=2)
    ap.add_argument("--n-maskcut", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=1, help="also time run() on this many images at once")
    args = ap.parse_args()
    print(machine(), f"torch threads {torch.get_num_threads()}", file=sys.stderr)
    folder = Path(tempfile.mkdtemp())
    results = {}
    if args.n_tokencut:
        paths = generated_images(folder / "voc", 3 * args.n_tokencut)
        paths = [p for p in paths if decode_image(str(p)).shape[1] == 500]  # landscape 500x375
        results["TokenCut, ViT-S/8, 500x375 padded (63x47 = 2961 patches)"] = run(
            "tokencut", "vits8", paths[: args.n_tokencut], args.device, args.batch
        )
    if args.n_maskcut:
        paths = generated_images(folder / "mc", args.n_maskcut, seed=1)
        results["MaskCut, ViT-B/8, 480x480 (60x60 = 3600 patches), 3 objects"] = run(
            "maskcut", "vitb8", paths, args.device, 1
        )
    print(
        "| case | images | official-style s/image (ViT + eigh) | unseg s/image (ViT + cut) | speed-up | "
        "eigen part: official eigh / unseg cut | boxes equal |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, r in results.items():
        print(
            f"| {name} | {r['images']} | {r['official']:.2f} ({r['official_vit']:.2f} + {r['official_eig']:.2f}) | "
            f"{r['ours']:.2f} ({r['ours_vit']:.2f} + {r['ours_cut']:.2f}) | **{r['official'] / r['ours']:.1f}x** | "
            f"{r['official_eig']:.2f} / {r['ours_cut']:.2f} s = **{r['official_eig'] / r['ours_cut']:.0f}x** | "
            f"{r['boxes_equal']}/{r['images']} |"
        )


if __name__ == "__main__":
    main()
