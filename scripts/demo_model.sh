#!/usr/bin/env bash
# `make demo-model`: reproduce unsegcli/weights_data/unseg-demo-synth.pt (CPU, ~20 min on 2 cores).
# A small MOVE-architecture segmenter (ViT/8, 4 blocks, 128-d, + the conv head) self-trained on
# generated shapes with their known masks; no pretrained backbone exists offline, so the ViT trains too.
set -euo pipefail
WORK=${1:-demo_model_work}
UNSEG=${UNSEG:-.venv/bin/unseg}
PY=${PY:-.venv/bin/python}
STEPS=${STEPS:-1200}
mkdir -p "$WORK"
"$UNSEG" synth "$WORK/train" --n 2000 --size 96 --seed 0 --quiet
"$UNSEG" synth "$WORK/heldout" --n 500 --size 96 --seed 1 --quiet
"$UNSEG" train "$WORK/train/images" --from-masks "$WORK/train/masks" --out "$WORK/run" --arch demo --random-init \
    --train-backbone --crop 96 --batch-size 16 --lr 1e-3 --steps "$STEPS" --seed 0 --infer-size 96 \
    --save-every 400 --log-images-every 400 --workers 1
"$UNSEG" weights export "$WORK/run/last.pt" --out unsegcli/weights_data/unseg-demo-synth.pt \
    --note "demo: self-trained on unseg synth shapes (seed 0, 2000 images, $STEPS steps); not the paper's model"
"$UNSEG" predict "$WORK/heldout/images" --out "$WORK/pred" --weights demo-synth --overwrite
"$UNSEG" eval saliency --gt "$WORK/heldout/masks" --pred "$WORK/pred" --json "$WORK/heldout_saliency.json"
echo "held-out score (500 unseg synth images, seed 1): $(cat "$WORK/heldout_saliency.json")" >&2
