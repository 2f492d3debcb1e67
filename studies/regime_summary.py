"""The regime study's summary: every trial of a `tune -P objective=signature` study, best first.

    MLFLOW_TRACKING_URI=sqlite:////work/study16/mlflow.db \
        python studies/regime_summary.py --storage sqlite:////work/study16/optuna.db \
        --study regime-naive-signature > studies/regime/summary.md

For each trial: its parameters, its state, its value (the mean cross-fit score over the seeds and
campaigns it ran), and per seed the campaign-0 rise and fall in sd of one half's pass rate and
how many campaigns scored at least 2 sd (the `objective/*` metrics its trial run logged at step =
seed index). All on the selection split's two halves: nothing here reads the report split.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--storage", required=True, help="the study's Optuna storage URL")
    parser.add_argument("--study", required=True, help="the study's name")
    args = parser.parse_args()

    import optuna

    from selfregress.tracking import connect

    study = optuna.load_study(study_name=args.study, storage=args.storage)
    store = connect()
    runs = {int(r.data.tags["trial"]): r for r in store.find_runs("tags.`selfregress.kind` = 'trial'")
            if r.data.tags.get("study_name") == args.study}
    trials = sorted(study.trials, key=lambda t: (t.value is None, -(t.value or 0.0)))
    print(f"# Study {args.study}: {sum(t.state.name == 'COMPLETE' for t in trials)} complete, "
          f"{sum(t.state.name == 'PRUNED' for t in trials)} pruned, {len(trials)} in all\n")
    print("| trial | state | " + " | ".join(sorted({k for t in trials for k in t.params}))
          + " | score | seeds | campaign-0 rise (sd) per seed | campaign-0 fall (sd) per seed | campaigns >= 2 sd |")
    names = sorted({k for t in trials for k in t.params})
    print("|" + "---|" * (len(names) + 7))
    for t in trials:
        run = runs.get(t.number)
        history = {key: _history(store, run, f"objective/{key}") for key in
                   ("campaign0_rise_sd", "campaign0_fall_sd", "campaigns_scoring_2sd")} if run else {}
        cells = [str(t.number), t.state.name.lower()]
        cells += [f"{t.params[k]:.2e}" if isinstance(t.params.get(k), float) else str(t.params.get(k, ""))
                  for k in names]
        value = t.value if t.value is not None else (t.intermediate_values or {None: None}).get(
            max(t.intermediate_values) if t.intermediate_values else None)
        cells.append("" if value is None else f"{value:.2f}")
        cells.append(str(len(history.get("campaign0_rise_sd", []))))
        for key in ("campaign0_rise_sd", "campaign0_fall_sd"):
            cells.append(" ".join(f"{v:+.1f}" for v in history.get(key, [])))
        cells.append(" ".join(f"{v:.0f}" for v in history.get("campaigns_scoring_2sd", [])))
        print("| " + " | ".join(cells) + " |")


def _history(store, run, key: str) -> list[float]:
    values = store.metric_history(run.info.run_id, key)
    return [values[s] for s in sorted(values)]


if __name__ == "__main__":
    main()
