#!/usr/bin/env bash
# Issue #16's regime search: an Optuna study (tune -P objective=signature) over the naive chain's
# learning rate, RL-set size and sampling temperature, on the cheap proxy (campaigns 0-2, tuning
# seeds 100-104). The first study (regime-naive-signature, lr x rl_tasks, the old mean-of-mins
# objective) is in the same store; STUDY_NAME and SEARCH select another.
#   bash studies/regime_search.sh [N_TRIALS]     # from the repository root, after scripts/setup.sh
# It runs from a code snapshot (a git worktree at $SNAPSHOT), with its MLflow store and its Optuna
# storage in $STUDY; when $STUDY is empty it unpacks the last studies/regime-*.tar.gz (by name) there
# (ARCHIVES picks the prefix) first, so a fresh machine continues where the last one stopped (Optuna counts the finished
# trials; a trial cut off mid-way is marked FAIL and does not count). Two tune processes share the
# study, one torch thread each (2 cores). Pack it before stopping:
#   .venv/bin/python studies/archive.py --store /work/study16/mlflow.db --out studies/regime-<date>.tar.gz \
#       --extra /work/study16/optuna.db
set -euo pipefail
cd "$(dirname "$0")/.."
SNAPSHOT=${SNAPSHOT:-fae0952}
STUDY=${STUDY:-/work/study16}
STUDY_NAME=${STUDY_NAME:-regime-naive-temperature-b}
SEARCH=${SEARCH:-lr=1e-4:1.2e-3:log,rl_tasks=16|64|256,temperature=1.0:1.6}
ARCHIVES=${ARCHIVES:-regime-2}      # which studies/<ARCHIVES>*.tar.gz a fresh machine continues from
CAMPAIGNS=${CAMPAIGNS:-3}
MODEL=${MODEL:-base}                # a base folder, alias or models:/ URI (bootstrap's registry base: base)
TRIALS=${1:-30}
mkdir -p "$STUDY"
# The worktree first: the archive's base model unpacks into code/mlruns (its artifact location).
[ -d "$STUDY/code/.git" ] || [ -f "$STUDY/code/.git" ] || git worktree add --detach "$STUDY/code" "$SNAPSHOT"
if [ ! -f "$STUDY/mlflow.db" ]; then
  archive=$(ls studies/"$ARCHIVES"*.tar.gz 2>/dev/null | sort | tail -n 1 || true)
  if [ -n "$archive" ]; then tar xzf "$archive" -C "$STUDY"; fi
fi
export PYTHONPATH="$STUDY/code/src:$STUDY/code"
export MLFLOW_TRACKING_URI="sqlite:///$STUDY/mlflow.db" MLFLOW_DISABLE_TELEMETRY=true OMP_NUM_THREADS=1
PY="$PWD/.venv/bin/python"
cd "$STUDY/code"
tune() {
  "$PY" -m selfregress tune --objective signature --condition naive \
    --search "$SEARCH" --chain_params checkpoints=none \
    --campaigns "$CAMPAIGNS" --steps 20 --model "$MODEL" --seeds 100,101,102,103,104 --n_trials "$TRIALS" \
    --study_name "$STUDY_NAME" --storage "sqlite:///$STUDY/optuna.db" \
    --out "$STUDY/best_params.json"
}
tune > "$STUDY/tune-1.log" 2>&1 &
first=$!
sleep 90          # the first process registers the base and opens the study run; the second joins it
tune > "$STUDY/tune-2.log" 2>&1 &
wait "$first" $!
