"""images/s of the Ray Data pipeline (unsegcli.ray) with 1 and 2 MaskPredictor actors on CPU, side by side with
plain `unseg predict` + `unseg boxes` on the same images, and a check that all three give the same labels.

    python benchmarks/ray_throughput.py --n 48                       # the embedded demo checkpoint, 2 CPUs
    python benchmarks/ray_throughput.py --n 48 --method maskcut --options '{"fixed_size": 224}'

Ray: one local instance (``ray.init(num_cpus=CPUS)``), started once before the timed runs (its start-up is
printed apart); each actor gets half a CPU so that read, Boxes and write tasks always find one (with 1 actor
it still runs one torch thread). `unseg predict` and `boxes` are timed as a user runs them: process start-up
and model load included (Ray's actors load the model inside the timed run too). The labels are checked equal to
those of `unseg predict` run with one thread, as each actor runs (docs/ray.md).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import generated_images, machine


def unseg(*args: str, quiet: bool = True, env: dict[str, str] | None = None) -> None:
    full = {**os.environ, **(env or {})}
    subprocess.run([sys.executable, "-m", "unsegcli", *args, *(["--quiet"] if quiet else [])], check=True, env=full)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=48)
    ap.add_argument("--method", default="move")
    ap.add_argument("--options", default="{}", help="JSON of MaskPredictor / predict options")
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=4)
    args = ap.parse_args()
    options = json.loads(args.options)
    flags = [f for k, v in options.items() for f in (f"--{k.replace('_', '-')}", str(v))]

    import ray

    import unsegcli.ray as ur

    print(machine(), "| load:", os.getloadavg())
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        generated_images(t / "imgs", args.n)
        rows = []
        start = time.perf_counter()
        unseg("predict", str(t / "imgs"), "--out", str(t / "masks"), "--method", args.method, *flags)
        unseg("boxes", str(t / "masks"), "--images", str(t / "imgs"), "--multi", "--out", str(t / "ref.json"))
        rows.append(("`unseg predict` + `unseg boxes --multi` (2 processes)", time.perf_counter() - start))

        # the reference labels: what an actor of one CPU computes with (Ray sets OMP_NUM_THREADS to its CPUs);
        # another thread count sums floats in another order, which can move a soft mask by one level at a pixel
        one = {"OMP_NUM_THREADS": "1"}
        unseg("predict", str(t / "imgs"), "--out", str(t / "masks1"), "--method", args.method, *flags, env=one)
        unseg("boxes", str(t / "masks1"), "--images", str(t / "imgs"), "--multi", "--out", str(t / "ref1.json"))

        start = time.perf_counter()
        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
        print(f"ray.init: {time.perf_counter() - start:.1f} s (not in the figures)")
        for actors in (1, 2):
            out = t / f"labels{actors}"
            start = time.perf_counter()
            # the files' bytes, decoded in the actors as unseg predict decodes them (docs/ray.md)
            ds = ray.data.read_binary_files(str(t / "imgs"), include_paths=True, file_extensions=ur.IMAGE_EXTENSIONS)
            ds = ds.map_batches(
                ur.MaskPredictor,
                fn_constructor_kwargs={"method": args.method, "root": str(t / "imgs"), "device": "cpu", **options},
                batch_size=args.batch_size,
                compute=ray.data.ActorPoolStrategy(size=actors),
                num_cpus=0.5,
            )
            ds.map_batches(ur.Boxes(), batch_size=args.batch_size).write_parquet(str(out))
            rows.append(
                (f"Ray Data, {actors} MaskPredictor actor{'s' if actors > 1 else ''}", time.perf_counter() - start)
            )
            unseg("merge", *map(str, sorted(out.glob("*.parquet"))), "--out", str(t / f"ray{actors}.json"), quiet=False)
            same = (t / f"ray{actors}.json").read_bytes() == (t / "ref1.json").read_bytes()
            print(f"{actors} actor(s): labels equal to predict + boxes (OMP_NUM_THREADS=1): {same}")
        ray.shutdown()
    print(f"\n{args.n} images, method {args.method} {options or ''}, batch {args.batch_size}\n")
    print("| run | seconds | images/s |\n| --- | --- | --- |")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.1f} | {args.n / seconds:.2f} |")
    print("load after:", os.getloadavg())


if __name__ == "__main__":
    main()
