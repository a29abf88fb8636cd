#!/usr/bin/env bash
# One-shot GPU check (issue 23): the gpu-marked tests, MOVE predict throughput at 448 (batch 1/8/32/64 x fp32/bf16,
# with and without torch.compile) beside the official-style loop, every training-free method per image with the
# batched GPU eigensolver beside the official path, a few training steps on CUDA (MOVE, Sempart, FOUND) with a
# loss check, and torchrun with NCCL on one GPU. Writes one report (markdown); exits 1 if any part failed.
# Sized for under 8 minutes on one H100/H200.
#
#   bash benchmarks/gpu_check.sh                       # on the GPU machine: report in gpu_check_report.md
#   bash benchmarks/gpu_check.sh --dry-run --out r.md  # every part on CPU with tiny models (tested in CI)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || command -v python3 )}"
exec "$PY" benchmarks/gpu_check.py "$@"
