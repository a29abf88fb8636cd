#!/usr/bin/env bash
# `make demo`: generate sample images and run the chain on the default (embedded) weights.
set -euo pipefail
OUT=${1:-demo_out}
UNSEG=${UNSEG:-.venv/bin/unseg}
PY=${PY:-.venv/bin/python}
mkdir -p "$OUT/images"
"$PY" - "$OUT/images" <<'PYEOF'
import sys
import numpy as np
from PIL import Image, ImageDraw
rng = np.random.default_rng(0)
for i in range(4):
    bg = rng.integers(60, 120, (240, 320, 3), dtype=np.uint8)
    img = Image.fromarray(bg)
    d = ImageDraw.Draw(img)
    x, y = rng.integers(40, 200), rng.integers(40, 120)
    d.ellipse([x, y, x + 90, y + 80], fill=tuple(int(v) for v in rng.integers(150, 255, 3)))
    img.save(f"{sys.argv[1]}/sample_{i}.jpg")
PYEOF
echo "sample images in $OUT/images" >&2
"$UNSEG" predict "$OUT/images" --out "$OUT/masks"
echo "masks in $OUT/masks" >&2
