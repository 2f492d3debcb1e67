#!/usr/bin/env bash
# Continue the #6 study (the full 7 x 5 sweep at the defaults) on a fresh machine:
#   bash studies/continue.sh            # from the repository root, after scripts/setup.sh
# It unpacks studies/sweep-3a93d029a9.tar.gz at /work/study (the store's paths are absolute),
# checks out the code snapshot the sweep was started from as a git worktree (its code version
# is part of every chain's cache key, so later edits to main cannot mix into the study), and
# runs the same sweep command: finished chains are skipped, the rest run, seed-major.
set -euo pipefail
cd "$(dirname "$0")/.."
SNAPSHOT=3a4d82c            # the commit the study's chains ran from (code version a7456fff819f)
STUDY=/work/study
archive=studies/sweep-3a93d029a9.tar.gz   # by name: a fresh clone's file times say nothing
if [ ! -f "$STUDY/mlflow.db" ]; then
  mkdir -p "$STUDY"
  [ -d "$STUDY/code" ] || git worktree add --detach "$STUDY/code" "$SNAPSHOT"
  tar xzf "$archive" -C "$STUDY"
fi
export PYTHONPATH="$STUDY/code/src:$STUDY/code"
export MLFLOW_TRACKING_URI="sqlite:///$STUDY/mlflow.db" MLFLOW_DISABLE_TELEMETRY=true
PY="$PWD/.venv/bin/python"
cd "$STUDY/code"
"$PY" -c "from selfregress.chain import code_version as v; assert v() == 'a7456fff819f', v()"
"$PY" -m selfregress sweep --conditions "${1:-naive,kl,ewc,grpo,es,care,grpo_es}" --workers 2
