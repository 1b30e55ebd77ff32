#!/usr/bin/env bash
# quickstart timing experiments on the new-user worktree, 1 thread, sequential
set -e
cd <repo>; PY=<repo>/.venv/bin/python; OUT=<out>
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 HF_HUB_OFFLINE=1
t() { local name=$1; shift; /usr/bin/time -f "$name %e s wall %U s user" "$@" > "$OUT/$name.log" 2>&1; grep -h "s wall" "$OUT/$name.log" >> "$OUT/times.txt"; }
[ -f $OUT/pretrain/model.safetensors ] || t pretrain $PY recipes/pretrain.py --output_dir $OUT/pretrain --report_to none
# FGSM-RS, 20 epochs, robust validation every 5 epochs
t ft-fgsm20-e5 $PY recipes/finetune.py --model_name_or_path $OUT/pretrain --output_dir $OUT/ft-fgsm20-e5 --report_to none \
  --attack_steps 1 --attack_step_size 10/255 --attack_random_start true --eval_strategy steps --eval_steps 95 --save_strategy steps --save_steps 95
# the current config, for the same-code baseline numbers
t ft-pgd $PY recipes/finetune.py --model_name_or_path $OUT/pretrain --output_dir $OUT/ft-pgd --report_to none
echo done > $OUT/DONE
