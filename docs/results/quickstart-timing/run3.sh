#!/usr/bin/env bash
set -e
cd <repo>; PY=<repo>/.venv/bin/python; OUT=<out>
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 HF_HUB_OFFLINE=1
while [ ! -f $OUT/DONE2 ]; do sleep 10; done
t() { local name=$1; shift; /usr/bin/time -f "$name %e s wall %U s user" "$@" > "$OUT/$name.log" 2>&1; grep -h "s wall" "$OUT/$name.log" >> "$OUT/times.txt"; }
# PGD-2, 15 epochs, robust validation once, at the end
t ft-pgd15-end $PY recipes/finetune.py --model_name_or_path $OUT/pretrain --output_dir $OUT/ft-pgd15-end --report_to none \
  --num_train_epochs 15 --eval_strategy steps --eval_steps 285 --save_strategy steps --save_steps 285
t eval-pgd15 $PY recipes/evaluate.py --config recipes/configs/evaluate_quickstart.yaml --model_name_or_path $OUT/ft-pgd15-end --output_dir $OUT/eval-pgd15
echo done > $OUT/DONE3
