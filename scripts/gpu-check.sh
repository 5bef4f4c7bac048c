#!/bin/bash
# The GPU numbers of docs/performance.md in one device call: `congeal bench` (paper preset, 10 photos, real-size
# DINOv2-G/14 with random weights) and `congeal invert --bench` (SD2.1-base-size models, random weights), each one
# JSON line per stage, plus the machine's GPU and library versions. Meant for a lent GPU machine, which has PyTorch
# and transformers but no registry: the few other packages travel as wheels (`make gpu-wheels` here, once).
#
#   make gpu-wheels                                   # here: .whl/ (omegaconf, diffusers, importlib_metadata)
#   device run: command "bash scripts/gpu-check.sh", carry [".whl"], timeout_s 540   # results under $OUT
#   DEVICE=cpu TINY=1 PYTHON=.venv/bin/python OUT="$(mktemp -d)" bash scripts/gpu-check.sh   # smoke test here
#
# Budget: about 8 minutes on an H100 (each step has its own timeout, so one slow step leaves the others' numbers).
# Not covered: the SDS-step overhead at real MVDream size, which needs threestudio and its compiled extensions there.
set -u -o pipefail
OUT=${OUT:-gpu-check-out}
PYTHON=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
    # a fresh private folder (not a fixed /tmp path another user could have planted), removed on exit
    site=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check-site.XXXXXXXX") || exit 1
    trap 'rm -rf "$site"' EXIT
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" \
        .whl/*.whl || { echo "installing the carried wheels failed" | tee "$OUT/errors.txt"; exit 1; }
    export PYTHONPATH=$site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD/custom/threestudio-congeal:${PYTHONPATH:-}
{
    date -u
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    "$PYTHON" -c "import torch, transformers, diffusers; print('torch', torch.__version__, 'cuda', torch.version.cuda,
'transformers', transformers.__version__, 'diffusers', diffusers.__version__)"
    git log -1 --format='commit %H' 2>/dev/null
} 2>&1 | tee "$OUT/machine.txt"

# registration: one JSON line per stage (seconds, peak memory)
tiny=()
[ -n "${TINY:-}" ] && tiny=(--tiny)
timeout 270 "$PYTHON" -m congeal bench --device "$DEVICE" --preset paper --images 10 "${tiny[@]}" 2>&1 \
    | tee "$OUT/bench.log"
echo "congeal bench exit ${PIPESTATUS[0]}" | tee -a "$OUT/machine.txt"

# textual inversion: ms per step, projected 1000 steps, peak memory
size=(--bench-size sd21-base)
[ -n "${TINY:-}" ] && size=(--bench-size tiny --steps 3 --resolution 32)
timeout 180 "$PYTHON" -m congeal invert --bench "${size[@]}" --device "$DEVICE" --no-progress 2>&1 | tee "$OUT/invert.log"
echo "congeal invert --bench exit ${PIPESTATUS[0]}" | tee -a "$OUT/machine.txt"
