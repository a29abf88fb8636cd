#!/usr/bin/env bash
# Run one chain of unseg commands with the code of two revisions on the same generated inputs and compare every
# output: byte for byte (masks, every label format, merge, CorLoc and saliency JSON, refined masks), and trained
# checkpoints by their tensors. How a restructuring is checked to change no output:
#   bash scripts/compare_outputs.sh 32d020c HEAD
# (CPU, about 5 minutes on 2 cores; uses .venv and a temporary folder it removes.)
set -uo pipefail
A=${1:?usage: compare_outputs.sh REV_A REV_B}; B=${2:?usage: compare_outputs.sh REV_A REV_B}
REPO=$(git rev-parse --show-toplevel); PY=$REPO/.venv/bin/python
WORK=$(mktemp -d); trap 'git -C "$REPO" worktree remove --force "$WORK/a" >/dev/null 2>&1; git -C "$REPO" worktree remove --force "$WORK/b" >/dev/null 2>&1; rm -rf "$WORK"' EXIT
git -C "$REPO" worktree add -q --detach "$WORK/a" "$A" && git -C "$REPO" worktree add -q --detach "$WORK/b" "$B" || exit 2
cd "$WORK"  # never the repository: `python -m` would import the working tree's code instead of a revision's
PYTHONPATH=$WORK/a "$PY" -m unsegcli synth "$WORK/in" --n 12 --size 96 --seed 7 --voc -q
PYTHONPATH=$REPO "$PY" -c "import sys; from pathlib import Path; from tests.helpers import save_dino_backbone;
save_dino_backbone(Path(sys.argv[1]), patch_size=8, embed_dim=128, depth=2)" "$WORK/dino.pth"

chain() {  # chain CODE OUT
  local code=$1 out=$2; mkdir -p "$out"; cp -r "$WORK/in" "$out/data"
  U() { PYTHONPATH=$code "$PY" -m unsegcli "$@" 2>>"$out/stderr.log"; echo "rc $? : $*" | sed "s|$out|OUT|g" >>"$out/rc.log"; }
  local J=$out/data/VOCdevkit/VOC2007/JPEGImages
  U predict "$J" --out "$out/masks" -q -j 0
  U predict "$J" --out "$out/masks_bin" --binary -q -j 0
  U predict "$J" --out "$out/masks_bs" --refine bilateral -q -j 0
  for m in tokencut lost maskcut; do U predict "$J" --out "$out/m_$m" --method $m --backbone "$WORK/dino.pth" -q -j 0; done
  for f in coco selfmask jsonl; do U boxes "$out/masks" --images "$J" --multi --format $f --out "$out/b_$f.out" -q -j 0; done
  U boxes "$out/m_maskcut" --images "$J" --out "$out/b_maskcut.json" -q -j 0
  U boxes "$out/masks" --images "$J" --shard 0/2 --out "$out/p0.json" -q -j 0
  U boxes "$out/masks" --images "$J" --shard 1/2 --out "$out/p1.json" -q -j 0
  U merge "$out/p0.json" "$out/p1.json" --out "$out/merged.json"
  U corloc voc07 --root "$out/data/VOCdevkit" --pred "$out/masks" --json "$out/corloc.json"
  U corloc voc07 --root "$out/data/VOCdevkit" --pred "$out/m_maskcut" --json "$out/corloc_mc.json"
  U eval saliency --gt "$out/data/masks" --pred "$out/masks" --json "$out/saliency.json"
  U refine "$out/masks" --images "$J" --out "$out/refined" -q -j 0
  local t=(--arch tiny --random-init --steps 2 --crop 64 --batch-size 2 --workers 0 --device cpu --log-images-every 0 -q)
  for obj in move sempart; do U train "$out/data/images" --out "$out/run_$obj" --method $obj "${t[@]}"; done
  U train "$out/data/images" --from-masks "$out/masks" --out "$out/run_self" "${t[@]}"
}
chain "$WORK/a" "$WORK/out_a"; chain "$WORK/b" "$WORK/out_b"
status=0
cmp -s "$WORK/out_a/rc.log" "$WORK/out_b/rc.log" || { echo "exit codes differ:"; diff "$WORK/out_a/rc.log" "$WORK/out_b/rc.log"; status=1; }
for f in $(cd "$WORK/out_a" && find . -type f ! -name '*.log' ! -path './data/*' ! -path './run_*' | sort); do
  cmp -s "$WORK/out_a/$f" "$WORK/out_b/$f" || { echo "differs: $f"; status=1; }
done
PYTHONPATH=$WORK/b "$PY" - "$WORK/out_a" "$WORK/out_b" <<'PYEOF' || status=1
import sys, torch
a, b = sys.argv[1:]
bad = 0
for obj in ("move", "sempart", "self"):
    x = torch.load(f"{a}/run_{obj}/last.pt", weights_only=True)
    y = torch.load(f"{b}/run_{obj}/last.pt", weights_only=True)
    same = x["state_dict"].keys() == y["state_dict"].keys() and all(torch.equal(x["state_dict"][k], y["state_dict"][k]) for k in x["state_dict"])
    same = same and x["model_config"] == y["model_config"] and x["preprocess"] == y["preprocess"]
    print(f"checkpoint {obj}: {'same tensors and model config' if same else 'DIFFERENT'}")
    bad += not same
sys.exit(bad)
PYEOF
[ $status = 0 ] && echo "every output is the same"
exit $status
