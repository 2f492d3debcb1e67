#!/usr/bin/env bash
# Issue #18's pilot: naive and es, seeds 0-1, on SmolLM2-135M-Instruct with LoRA rank 8, on a seeded
# split of HumanEval (the chain's fixed shuffle: 16 selection, 64 RL, 32 report tasks), sampled at
# T = 0.6. Why HumanEval and not the synthetic tasks: the model solves none of 64 synthetic tasks
# greedy (stdin/stdout programs are foreign to it) but 4.9 % of HumanEval greedy, 0.6 % at T = 1
# (README, #18); T = 0.6 sits between, so that a step of 32 samples sees some reward.
# Session 13 ran its first design (one campaign of 6 steps) for naive seed 0 only (sweep
# 6ef297e21f, README "The pilot"): with one campaign es is the same chain as naive (its controller
# acts between campaigns), so the design now has two campaigns of 3 steps. Measured then: a step
# takes ~5.6 min on this machine, idle, one chain on two threads (update 3.6 min of it), so the
# four chains need ~3 hours: run it in parts (the sweep resumes) or on a larger machine.
# Two chains at once, one torch thread each, fit in memory with micro_batch 8 (one chain's
# whole-batch update peaked near 13 GB; two were OOM-killed).
#   bash studies/pilot_smollm2.sh                 # from the repository root, after
#                                                 # SELFREGRESS_EXTRAS=real bash scripts/setup.sh
# It imports the model into $PILOT's store once, then runs the four chains as one sweep from a code
# snapshot as a git worktree, then `report`. Sweeps resume: run it again (same SNAPSHOT) to finish
# what was cut off; pack it with studies/archive.py.
# SEEDS=1 runs only seed 1 (session 15 finished seed 0: sweep 0e5ad8c3a5, README "The pilot").
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
  # 2 campaigns x 3 steps x (8 prompts x 4 samples); selection 16 x 1 after every step; report 32 x 1
  # at each campaign's start, peak and end; 256 new tokens.
  SIZE=(--tasks humaneval --campaigns "${CAMPAIGNS:-2}" --steps "${STEPS:-3}" --batch_size 8 --group_size 4
        --eval_tasks 16 --eval_samples 1 --report_tasks 32 --report_samples 1 --max_new_tokens 256
        --seeds "${SEEDS:-0,1}" --conditions naive,es --workers "${WORKERS:-2}")
fi
# LoRA, retention and micro-batches are main parameters the sweep takes through its params file.
# (Session 13's first design is this script as of commit ed026b2, run with SNAPSHOT=e847e9f.)
printf '{"lora_rank": 8, "retention": "decisions", "rl_tasks": 64, "temperature": 0.6, "micro_batch": %s}\n' \
  "${MICRO_BATCH:-8}" > "$PILOT/params.json"
/usr/bin/time -v "$PY" -m selfregress sweep --model smollm2-135m --lr 1e-4 --checkpoints peaks \
  --params_file "$PILOT/params.json" "${SIZE[@]}" 2>&1 | tee -a "$PILOT/sweep.log"
"$PY" -m selfregress report --out "$PILOT/report" 2>&1 | tee -a "$PILOT/report.log"
