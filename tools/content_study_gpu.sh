#!/usr/bin/env bash
# One GPU lease for issues 30 and 31 (2026-12-04), run on the device machine from the repository root:
#   A. per-step speed on CUDA (#31 item 4): benchmarks/step_speed.py, the obvious loop against the
#      library loop and its bf16 / compiled / CUDA-graph variants, on kodim23 768x512, GPU otherwise idle;
#   B. the screen-content fine-tunes (#30): tools/train_content.py, --finetune prior and all, qualities
#      1-4, STEPS steps each (8 processes), exports int8 (a lease returns at most 16 MiB per file);
#   C. the resolution set (#30): latentfit eval, none and sga+ssl 500 steps with latentfit's defaults,
#      CLIC valid8 halved and full size, one process per (size, quality), beside B.
# Inputs travel in .gpu-data/content (made here first by `python tools/make_content_sets.py lease`:
# lossless WebP copies of data/content-sets and kodim23.png); the call carries .gpu-data/content and
# .whl (compressai, pytorch-msssim, bjontegaard wheels for the device's Python), and the working tree
# must stay under 64 MiB (2026-12-04: the results/ folder and the bundled weights other than
# latentfit-msh were left out of that copy: `git rm -r -q --cached results 'src/latentfit/weights/latentfit-ctx-*'
# 'src/latentfit/weights/latentfit-msh-warm-*'` and the same paths in .git/info/exclude for the call,
# then `git reset -q` and the exclude file restored). Everything comes back under $OUT as tars: the 4 model
# tars (15.8 MB each) used the 64 MiB a lease returns, so the eval journals did not come back that
# time; keep results.tar small (cells.jsonl and logs only) or return fewer models.
#   bash tools/content_study_gpu.sh [SECONDS_FOR_B_AND_C] [STEPS]
set -u
BC_SECONDS=${1:-300}
STEPS=${2:-1200}
OUT=${OUT:-/tmp/lease-out}
W=/tmp/lease
D=.gpu-data/content
mkdir -p "$OUT" "$W"
exec > >(tee "$OUT/log.txt") 2>&1
export PYTHONUNBUFFERED=1 LATENTFIT_OFFLINE=1
if [ -z "${NO_WHEELS:-}" ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD/src
fi
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null
$PY -c "import torch, compressai; print('torch', torch.__version__, 'compressai', compressai.__version__, 'cuda', torch.cuda.is_available())"

echo "== A: step speed $(date +%T)"
for variants in bf16,compile compile+bf16 reduce-overhead+bf16; do
  timeout ${A_TIMEOUT:-100} $PY benchmarks/step_speed.py --device $DEVICE --crop ${A_CROP:-0} --image $D/kodim23.png \
    --steps ${A_STEPS:-15} --blocks 2 --threads 4 --peak-gflops 67000 --variants $variants 2>&1 | grep -v Warning \
    | tee -a "$W/step_speed.txt"
  echo "(exit ${PIPESTATUS[0]})" | tee -a "$W/step_speed.txt"
done

echo "== B and C: $(date +%T)"
START=$(date +%s)
pids=()
epids=()
# lr: 1e-4 for the probability model; 2e-5 for everything (Adam's first steps at 1e-4 double the
# validation MSE of latentfit-msh, at 2e-5 +2 % recovered by step 3). Exports: prior int8 (its g_a/g_s
# are the base's int8 tensors exactly), all mixed (fp16 g_a/g_s: int8 would round a fine-tune away).
for part in prior:1e-4:int8 all:2e-5:mixed; do
  IFS=: read part lr dtype <<< "$part"
  for q in 1 2 3 4; do
    $PY tools/train_content.py --finetune $part --qualities $q --steps $STEPS --seconds $((BC_SECONDS - 40)) \
      --lr $lr --drop-at 0.7 --batch-size ${BATCH:-16} --patch-size 256 --train-dir $D/screen-train \
      --valid-dir $D/screen-valid --valid-images 20 --valid-crop 512 --name screen --export-dtype $dtype \
      --device $DEVICE --threads 1 --root $W/train --out $W/models > $W/train-$part-q$q.log 2>&1 &
    pids+=($!)
  done
done
for size in half full; do
  for q in 1 2 3 4; do
    timeout $((BC_SECONDS - 5)) $PY -m latentfit.cli eval $D/clic-$size -o $W/res-$size-q$q --model latentfit-msh \
      --quality $q --method none,sga+ssl --steps ${C_STEPS:-500} --lr 0.03 --lr-schedule cosine --schedule budget \
      --device $DEVICE --threads 1 --no-progress > $W/eval-$size-q$q.log 2>&1 &
    epids+=($!)
  done
done
wait "${pids[@]}"
echo "training done $(date +%T), $(( $(date +%s) - START )) s"
wait "${epids[@]}"  # (a bare `wait` would also wait for the tee above, forever)
echo "evals done $(date +%T), $(( $(date +%s) - START )) s"
for f in $W/train-*.log; do echo "-- $f"; tail -2 "$f" | cut -c1-600; done
for f in $W/eval-*.log; do echo "-- $f: $(wc -l < ${f/eval-/res-}/cells.jsonl 2>/dev/null) cells"; tail -2 "$f" | cut -c1-300; done
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv 2>/dev/null

# a prior fine-tune's g_a/g_s are the bundled latentfit-msh's tensors: they stay behind (the lease returns
# at most 16 MiB per file); tools/train_content.py --restore puts them back and checks the card's digest
$PY - "$W/models" <<'PYEOF'
import sys, torch
from pathlib import Path
for path in Path(sys.argv[1]).glob("screen-prior-*.pt"):
    state = torch.load(path, map_location="cpu", weights_only=True)
    torch.save({k: v for k, v in state.items() if not k.startswith(("g_a.", "g_s."))}, path.with_suffix(".prior"))
    path.unlink()
PYEOF
for q in 1 2 3 4; do
  (cd $W/models && tar cf "$OUT/models-q$q.tar" screen-prior-$q.* screen-all-$q.* 2>/dev/null)
done
(cd $W && tar cf "$OUT/results.tar" step_speed.txt *.log res-*/cells.jsonl)
ls -la "$OUT"
