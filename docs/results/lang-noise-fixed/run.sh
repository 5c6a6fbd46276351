#!/usr/bin/env bash
#   docs/results/lang-noise-fixed/run.sh   (after configs/lang-en-ko-methods-sweep.ini has run into
#   runs/lang-methods; UNDO=path overrides build/undo; outputs in runs/lang-fixed; then
#   python3 docs/results/lang-noise-fixed/robustness.py 20250606, from the repository root)
# UNDO students of the short language setting at one fixed distillation budget (400 steps, no stopping
# rule), from the methods sweep's MaxEnt teacher and cache, each attacked like the sweep's models.
set -euo pipefail
cd "$(dirname "$0")/../../.."
U=${UNDO:-build/undo}
J=runs/lang-methods/jobs
mkdir -p runs/lang-fixed
common=(--config configs/lang-en-ko.ini --model.d_model 128 --model.d_ff 384 --train.batch_size 16
        --train.ckpt_every 250 --eval.batches 4 --unlearn.steps 50 --unlearn.lr 5e-4 --distill.lr 9e-4
        --distill.min_lr 7e-4 --distill.warmup 50 --distill.check_every 50 --run.threads 1)
student() {  # alpha seed
  local d=runs/lang-fixed/a$1-s$2
  $U distill "${common[@]}" --distill.steps 400 --distill.stop_metric none \
    --teacher $J/unlearn-maxent-63a4551581b9/model.ckpt --distill.cache_dir runs/lang-methods/cache \
    --distill.cache require --distill.cache_k 32 --distill.cache_samples 32 --run.seed $2 \
    --distill.init noised --distill.alpha $1 --distill.beta 0.1 --run-dir $d/student > $d.distill.log 2>&1
  $U relearn "${common[@]}" --distill.steps 400 --model $d/student/model.ckpt --lrs 1e-3,7e-4,4e-4,1e-4,7e-5 \
    --steps 100 --eval-every 20 --run-dir $d/attack > $d.relearn.log 2>&1
}
for a in 0.8 0.5; do
  student $a 1 & student $a 2 & wait
done
student 0.8 3 & student 0.5 3 & wait
echo done
