#!/usr/bin/env bash
# `make demo`: the whole chain on the embedded defaults, offline, on CPU:
# synth (with a VOC tree) -> predict (demo checkpoint) -> boxes --multi -> corloc -> eval saliency
# -> a YOLO export -> a review report (`unseg show`).
set -euo pipefail
OUT=${1:-demo_out}
UNSEG=${UNSEG:-.venv/bin/unseg}
rm -rf "$OUT"
"$UNSEG" synth "$OUT/data" --n 60 --size 96 --seed 7 --voc --quiet
"$UNSEG" predict "$OUT/data/VOCdevkit/VOC2007/JPEGImages" --out "$OUT/masks"
"$UNSEG" boxes "$OUT/masks" --images "$OUT/data/VOCdevkit/VOC2007/JPEGImages" --multi --out "$OUT/pseudo_multi.json"
"$UNSEG" corloc voc07 --root "$OUT/data/VOCdevkit" --pred "$OUT/masks" --json "$OUT/corloc.json"
"$UNSEG" eval saliency --gt "$OUT/data/masks" --pred "$OUT/masks" --json "$OUT/saliency.json"
"$UNSEG" boxes "$OUT/masks" --images "$OUT/data/VOCdevkit/VOC2007/JPEGImages" --multi --format yolo --out "$OUT/yolo" --quiet
"$UNSEG" show "$OUT/pseudo_multi.json" --images "$OUT/data/VOCdevkit/VOC2007/JPEGImages" --gt "$OUT/data/VOCdevkit/VOC2007" --out "$OUT/review"
cat >&2 <<MSG

demo finished:
  images + GT masks      $OUT/data/images, $OUT/data/masks  (VOC tree: $OUT/data/VOCdevkit/VOC2007)
  predicted masks        $OUT/masks
  COCO pseudo-labels     $OUT/pseudo_multi.json
  CorLoc (VOC07 layout)  $OUT/corloc.json
  saliency metrics       $OUT/saliency.json
  YOLO dataset           $OUT/yolo  (yolo train data=$OUT/yolo/data.yaml)
  review report          $OUT/review/index.html  (open in a browser)
MSG
