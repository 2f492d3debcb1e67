#!/usr/bin/env bash
# Issue #16's check of a regime the search chose, on what the search never saw: the evaluation
# seeds 0-4, the report split, 5 campaigns (the issue's recurrence window).
#   bash studies/regime_verify.sh PARAMS_JSON [CAMPAIGNS]   # from the repository root, after setup
# PARAMS_JSON is a tune best_params.json (or any JSON of main parameters); the chains (naive, or
# $CONDITIONS) run as one sweep (two workers, one torch thread each) in $VERIFY's store, from a code snapshot as
# a git worktree, then `report` writes report.md and signature.csv (regime.py: rise and fall at
# the selection-chosen peak in report-noise sd, per seed and in the mean, recurrence, mechanism)
# to $VERIFY/report. Pack it without checkpoints:
#   .venv/bin/python studies/archive.py --store $VERIFY/mlflow.db --out studies/verify-<name>.tar.gz
# and continue on a fresh machine with ARCHIVE=studies/verify-<name>.tar.gz and the same SNAPSHOT
# (a chain is skipped only when its code version matches): finished chains are not run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PARAMS=$(realpath "$1")
CAMPAIGNS=${2:-5}
CONDITIONS=${CONDITIONS:-naive}     # the regime-dependence runs: CONDITIONS=naive,grpo,es,care
SEEDS=${SEEDS:-0,1,2,3,4}            # fewer for a probe: SEEDS=0,1,2
SNAPSHOT=${SNAPSHOT:-$(git rev-parse --short HEAD)}
VERIFY=${VERIFY:-/work/verify16}
mkdir -p "$VERIFY"
[ -e "$VERIFY/code/.git" ] || git worktree add --detach "$VERIFY/code" "$SNAPSHOT"
if [ ! -f "$VERIFY/mlflow.db" ] && [ -n "${ARCHIVE:-}" ]; then tar xzf "$ARCHIVE" -C "$VERIFY"; fi
export PYTHONPATH="$VERIFY/code/src:$VERIFY/code"
export MLFLOW_TRACKING_URI="sqlite:///$VERIFY/mlflow.db" MLFLOW_DISABLE_TELEMETRY=true OMP_NUM_THREADS=1
PY="$PWD/.venv/bin/python"
cd "$VERIFY/code"
"$PY" -m selfregress sweep --conditions "$CONDITIONS" --seeds "$SEEDS" --workers 2 --campaigns "$CAMPAIGNS" \
  --params_file "$PARAMS" --checkpoints peaks 2>&1 | tee -a "$VERIFY/sweep.log"
"$PY" -m selfregress report --out "$VERIFY/report" 2>&1 | tee -a "$VERIFY/report.log"
