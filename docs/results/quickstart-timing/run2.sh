#!/usr/bin/env bash
set -e
cd <repo>; PY=<repo>/.venv/bin/python; OUT=<out>
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 HF_HUB_OFFLINE=1
while [ ! -f $OUT/DONE ]; do sleep 10; done
t() { local name=$1; shift; /usr/bin/time -f "$name %e s wall %U s user" "$@" > "$OUT/$name.log" 2>&1; grep -h "s wall" "$OUT/$name.log" >> "$OUT/times.txt"; }
# PGD-2 as today, robust validation at epochs 10 and 20 only
t ft-pgd-e10 $PY recipes/finetune.py --model_name_or_path $OUT/pretrain --output_dir $OUT/ft-pgd-e10 --report_to none \
  --eval_strategy steps --eval_steps 190 --save_strategy steps --save_steps 190
t eval-pgd $PY recipes/evaluate.py --config recipes/configs/evaluate_quickstart.yaml --model_name_or_path $OUT/ft-pgd --output_dir $OUT/eval-pgd
echo done > $OUT/DONE2
