#!/usr/bin/env bash
# Training throughput on a GPU, in one run: ResNet-50 images/s with bf16 autocast and channels_last,
# nnatlas's against torchvision's, and the seq2seq Transformer's tokens/s.
#
#   bash benchmarks/gpu.sh                # on a machine with a CUDA GPU; figures go to stdout and $OUT_JSON
#   bash benchmarks/gpu.sh --dry-run      # tiny sizes on the CPU: checks that the script runs
#
# Extra arguments go to `python -m benchmarks.gpu_throughput` (see its --help). PYTHON picks the
# interpreter (default: .venv/bin/python if present, else python3); the repository's src/ goes first on
# PYTHONPATH so the checkout, not an installed copy, is measured.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
OUT_JSON="${OUT_JSON:-${OUT:-.}/gpu_throughput.json}"
export PYTHONPATH="$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ "${1:-}" != "--dry-run" ]; then
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
fi
"$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())"
"$PYTHON" -m benchmarks.gpu_throughput --json "$OUT_JSON" "$@"
echo "figures written to $OUT_JSON"
