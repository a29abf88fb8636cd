"""Pseudo-labels with Ray Data: images -> masks -> boxes -> parquet parts, then `unseg merge` (docs/ray.md).

    pip install 'unseg[ray]'
    unseg synth data --n 8 --size 64 --seed 0
    python examples/ray_pseudolabels.py data/images labels/ --num-cpus 2
    unseg merge labels/*.parquet --out pseudo.json

On a cluster, leave out --num-cpus (``ray.init`` joins the running cluster: RAY_ADDRESS) and give the stage its
GPUs: ``--method maskcut --num-gpus 1 --concurrency 8 --device cuda``; inputs and outputs may be URLs
(``s3://...``) that Ray's filesystems read.
"""

from __future__ import annotations

import argparse
import json


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images", help="folder or URL of images (read_binary_files, decoded as unseg predict does)")
    ap.add_argument("out", help="folder or URL for the parquet parts")
    ap.add_argument("--method", default="move", help="as `unseg predict --method` (default: the demo checkpoint)")
    ap.add_argument("--options", default="{}", help="JSON of MaskPredictor keywords, e.g. '{\"max_objects\": 3}'")
    ap.add_argument("--concurrency", type=int, default=1, help="MaskPredictor actors")
    ap.add_argument("--num-gpus", type=float, default=0, help="GPUs per actor")
    ap.add_argument("--num-cpus", type=int, default=None, help="start a local Ray with this many CPUs")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()

    import ray

    import unsegcli.ray as ur

    ray.init(num_cpus=args.num_cpus, include_dashboard=False)
    ur.pseudo_labels(
        args.images,
        args.out,
        args.method,
        concurrency=args.concurrency,
        num_gpus=args.num_gpus,
        batch_size=args.batch_size,
        device=args.device,
        **json.loads(args.options),
    )
    print(f"wrote {args.out}; next: unseg merge {args.out.rstrip('/')}/*.parquet --out pseudo.json")


if __name__ == "__main__":
    main()
