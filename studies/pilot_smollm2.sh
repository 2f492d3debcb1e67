#!/usr/bin/env bash
# Issue #18's pilot: naive and es, seeds 0-1, on SmolLM2-135M-Instruct with LoRA rank 8, on a seeded
# split of HumanEval (the chain's fixed shuffle: 16 selection, 64 RL, 32 report tasks), sampled at
# T = 0.6. Why HumanEval and not the synthetic tasks: the model solves none of 64 synthetic tasks
# greedy (stdin/stdout programs are foreign to it) but 4.9 % of HumanEval greedy, 0.6 % at T = 1
# (README, #18); T = 0.6 sits between, so that a step of 32 samples sees some reward.
# Sized for about 2 hours of this 2-core machine (one campaign of 6 steps per chain, two chains at
# once, one torch thread each; a decode step of this model at batch ~160 took ~4 s there;
# session 13 runs them one at a time on two threads, see below):
#   bash studies/pilot_smollm2.sh                 # from the repository root, after
#                                                 # SELFREGRESS_EXTRAS=real bash scripts/setup.sh
# It imports the model into $PILOT's store once, then runs the four chains as one sweep from a code
# snapshot as a git worktree, then `report`. Sweeps resume: run it again (same SNAPSHOT) to finish
# what was cut off; pack it with studies/archive.py.
# SMOKE=1 runs one step of one campaign at toy sizes (a few minutes): a check that the path works.
set -euo pipefail
cd "$(dirname "$0")/.."
SNAPSHOT=${SNAPSHOT:-$(git rev-parse --short HEAD)}
PILOT=${PILOT:-/work/pilot18}
mkdir -p "$PILOT"
[ -e "$PILOT/code/.git" ] || git worktree add --detach "$PILOT/code" "$SNAPSHOT"
export PYTHONPATH="$PILOT/code/src:$PILOT/code"
export MLFLOW_TRACKING_URI="sqlite:///$PILOT/mlflow.db" MLFLOW_DISABLE_TELEMETRY=true OMP_NUM_THREADS=1
export MALLOC_MMAP_THRESHOLD_=1048576   # glibc: LoRA's peak RSS 4.4 GB instead of 7.1 (README, memory)
PY="$PWD/.venv/bin/python"
cd "$PILOT/code"
"$PY" - <<'PY' || "$PY" -m selfregress.import_model 2>&1 | tee -a "$PILOT/import.log"
import sys
from mlflow import MlflowClient
try:
    MlflowClient().get_model_version_by_alias("selfregress-base", "smollm2-135m")
except Exception:
    sys.exit(1)
PY
if [ "${SMOKE:-0}" = 1 ]; then
  SIZE=(--tasks humaneval --campaigns 1 --steps 1 --batch_size 2 --group_size 2 --eval_tasks 4 --eval_samples 1
        --report_tasks 4 --report_samples 1 --max_new_tokens 32 --seeds 0 --conditions naive --workers 1)
else
  # 1 campaign x 6 steps x (8 prompts x 4 samples); selection 16 x 1 after every step; report 32 x 1
  # at the campaign's start, peak and end; 256 new tokens.
  SIZE=(--tasks humaneval --campaigns 1 --steps 6 --batch_size 8 --group_size 4 --eval_tasks 16 --eval_samples 1
        --report_tasks 32 --report_samples 1 --max_new_tokens 256 --seeds 0,1 --conditions naive,es
        --workers "${WORKERS:-1}")
  # One chain at a time, on both cores: a step's update on 32 x (prompt + 256) tokens peaks near
  # 13 GB here (full-vocabulary logits, and activations kept for the backward), and with two
  # chains at once the kernel's OOM killer ended one (session 13, sweep 6ef297e21f, es seed 0).
fi
# LoRA and retention are main parameters the sweep takes through its params file.
printf '{"lora_rank": 8, "retention": "decisions", "rl_tasks": 64, "temperature": 0.6}\n' > "$PILOT/params.json"
/usr/bin/time -v "$PY" -m selfregress sweep --model smollm2-135m --lr 1e-4 --checkpoints peaks \
  --params_file "$PILOT/params.json" "${SIZE[@]}" 2>&1 | tee -a "$PILOT/sweep.log"
"$PY" -m selfregress report --out "$PILOT/report" 2>&1 | tee -a "$PILOT/report.log"
