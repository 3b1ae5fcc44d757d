#!/usr/bin/env bash
# Trains the bundled `latentfit-msh` models (mean-scale hyperprior, N=128, M=192), resumably.
#
# Stage 1 trains quality 3 (λ=0.013) from scratch (or continues from the committed weights when
# INIT=1); stage 2 fine-tunes qualities 1, 2, 4 (λ 0.0035, 0.0067, 0.025) from it at their own λ
# (with INIT=1, each from its own committed weights). Every stage resumes from
# $ROOT/<stage>/last.pt after an interrupt: just run the script again. Exports land in $ROOT/export;
# copy them into src/latentfit/weights/ to ship them.
#
# Usage: tools/train_bundled.sh [BASE_STEPS] [FINETUNE_STEPS]
set -euo pipefail
cd "$(dirname "$0")/.."
BASE_STEPS=${1:-6000}
FT_STEPS=${2:-1500}
ROOT=${LATENTFIT_TRAIN_ROOT:-$HOME/.cache/latentfit/training}
DATA=${LATENTFIT_DATA:-../shared/data}
PY=${PYTHON:-.venv/bin/python}
mkdir -p "$ROOT/export"
common=(--train-dir "$DATA/train/cid22-train" --train-dir "$DATA/train/bsds500"
        --valid-dir "$DATA/train/cid22-valid" --architecture mbt2018-mean --N 128 --M 192
        --batch-size 8 --patch-size 128 --checkpoint-every 100 --validate-every 500
        --threads "${THREADS:-2}")
init=()
if [ "${INIT:-0}" = 1 ]; then init=(--init-from src/latentfit/weights/latentfit-msh-3.pt); fi

run_stage() {  # stops the script unless the stage reached its step count (an interrupt stops it)
    "$PY" -m latentfit.cli train "$@" | tee /dev/stderr | grep -q '"finished": true' || exit 1
}

run_stage "${common[@]}" "${init[@]}" --lmbda 0.013 --steps "$BASE_STEPS" --lr 2e-4 \
    --checkpoint-dir "$ROOT/q3" --export "$ROOT/export/latentfit-msh-3.pt" --name latentfit-msh --quality 3

for spec in "1 0.0035" "2 0.0067" "4 0.025"; do
    set -- $spec
    start="$ROOT/export/latentfit-msh-3.pt"
    if [ "${INIT:-0}" = 1 ]; then start="src/latentfit/weights/latentfit-msh-$1.pt"; fi
    run_stage "${common[@]}" --init-from "$start" \
        --lmbda "$2" --steps "$FT_STEPS" --lr 1e-4 --lr-drop-at 0.8 --seed "$1" \
        --checkpoint-dir "$ROOT/q$1" --export "$ROOT/export/latentfit-msh-$1.pt" --name latentfit-msh --quality "$1"
done
