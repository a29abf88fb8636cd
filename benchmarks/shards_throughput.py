"""The same N small images as a folder of files and as WebDataset shards: reading (listing + decoding) and
`unseg predict` (folder -> folder vs shards -> shards), side by side, interleaved, in one run.

Reading: the folder path lists the folder (``io.images.scan_inputs``) and decodes each file; the shard path
stages each shard's members into a temp folder (``io.shards.extract_shard``, what ``unseg predict`` does
with shards), lists and decodes them. Predict: `python -m unsegcli predict` in a fresh process (start-up
included), the tiny random checkpoint of the tests at size 64, so the model does not hide the input side.
Reading is measured from the local disk and through a loopback HTTP server (the stdlib's, one request per
file for the folder, one per shard for the shards): every file open of a remote folder is a round trip,
which is where shards pay off (on object stores, with real latency, more so than on loopback).

    python benchmarks/shards_throughput.py --n 1000 --per-shard 250 --predict-n 200
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine


def small_images(folder: Path, n: int, side: int = 96) -> list[Path]:
    """``n`` JPEGs of side x side (smooth random colours), the many-small-files case."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        small = rng.integers(0, 256, (side // 16, side // 16, 3), dtype=np.uint8)
        p = folder / f"{i:06d}.jpg"
        Image.fromarray(small).resize((side, side), Image.BILINEAR).save(p, quality=90)
        paths.append(p)
    return paths


def make_shards(paths: list[Path], folder: Path, per_shard: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    shards = []
    for k in range(0, len(paths), per_shard):
        shard = folder / f"train-{k // per_shard:06d}.tar"
        with tarfile.open(shard, "w") as tar:
            for p in paths[k : k + per_shard]:
                tar.add(p, arcname=p.name)
        shards.append(shard)
    return shards


def read_folder(folder: str) -> int:
    from unsegcli.io.images import decode_image, scan_inputs

    items = scan_inputs([folder]).items
    for it in items:
        decode_image(it.path)
    return len(items)


def read_shards(shards: list[str]) -> int:
    from unsegcli.io.images import IMAGE_EXTENSIONS, decode_image, scan_inputs
    from unsegcli.io.shards import extract_shard, sample_key

    n = 0
    for shard in shards:
        with tempfile.TemporaryDirectory() as tmp:
            extract_shard(shard, tmp, IMAGE_EXTENSIONS)
            for it in scan_inputs([tmp], key=sample_key).items:
                decode_image(it.path)
                n += 1
    return n


@contextlib.contextmanager
def http_server(root: Path) -> Iterator[str]:
    """A loopback HTTP server of ``root`` in a thread: its base URL."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def predict(args: list[str]) -> None:
    res = subprocess.run([sys.executable, "-m", "unsegcli", "predict", *args, "-q"], capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(res.stderr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000, help="images for the reading comparison")
    ap.add_argument("--per-shard", type=int, default=250)
    ap.add_argument("--predict-n", type=int, default=200, help="images for the predict comparison")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=0)
    args = ap.parse_args()

    import torch

    from unsegcli.config import PRESETS, PreprocessConfig
    from unsegcli.methods.move.segmenter import Segmenter
    from unsegcli.model.checkpoint import checkpoint_dict, save_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        paths = small_images(tmp_path / "imgs", args.n)
        shards = make_shards(paths, tmp_path / "shards", args.per_shard)
        print(f"machine: {machine()}")
        print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(f"reading: {args.n} JPEGs of 96x96 ({sum(p.stat().st_size for p in paths) / args.n / 1024:.1f} kB each), "
              f"{len(shards)} shards of {args.per_shard}")  # fmt: skip
        runs = {
            "folder of files, local disk": lambda: read_folder(str(tmp_path / "imgs")),
            "shards, local disk (staged to a temp folder)": lambda: read_shards([str(s) for s in shards]),
        }
        with http_server(tmp_path) as base:
            runs["folder over loopback HTTP (a request per file)"] = lambda: read_folder(f"{base}/imgs/")
            runs["shards over loopback HTTP (a request per shard)"] = lambda: read_shards(
                [f"{base}/shards/{s.name}" for s in shards]
            )
            times: dict[str, list[float]] = {name: [] for name in runs}
            for _ in range(args.repeats):  # interleaved, so a change of load hits every run alike
                for name, fn in runs.items():
                    times[name].append(timed(fn))
        print(f"| reading (list + decode) | images/s (median of {args.repeats}) |")
        print("| --- | --- |")
        for name, t in times.items():
            print(f"| {name} | {args.n / statistics.median(t):.0f} |")

        torch.manual_seed(0)
        ckpt = tmp_path / "tiny.pt"
        save_checkpoint(ckpt, checkpoint_dict(Segmenter(PRESETS["tiny"]).eval(), PreprocessConfig(size=64)))
        few = tmp_path / "few"
        few.mkdir()
        for p in paths[: args.predict_n]:
            os.link(p, few / p.name)
        few_shards = make_shards(paths[: args.predict_n], tmp_path / "few_shards", args.per_shard)
        common = ["--weights", str(ckpt), "-j", str(args.workers), "--overwrite"]
        folder_p, shard_p = [], []
        for r in range(args.repeats):
            folder_p.append(timed(lambda r=r: predict([str(few), "--out", str(tmp_path / f"m{r}"), *common])))
            spec = str(tmp_path / "few_shards" / f"train-{{000000..{len(few_shards) - 1:06d}}}.tar")
            shard_p.append(
                timed(lambda r=r, s=spec: predict([s, "--out", str(tmp_path / f"s{r}" / "m-{shard}.tar"), *common]))
            )
        print(f"\npredict: {args.predict_n} images, tiny checkpoint at 64, -j {args.workers}, start-up included")
        print(f"| `unseg predict` | images/s (median of {args.repeats}) |")
        print("| --- | --- |")
        print(f"| folder -> folder | {args.predict_n / statistics.median(folder_p):.1f} |")
        print(f"| shards -> shards | {args.predict_n / statistics.median(shard_p):.1f} |")
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
