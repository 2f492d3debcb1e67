"""The regime study's summary: every trial of a `tune -P objective=signature` study, best first.

    MLFLOW_TRACKING_URI=sqlite:////work/study16/mlflow.db \
        python studies/regime_summary.py --storage sqlite:////work/study16/optuna.db \
        --study regime-naive-signature > studies/regime/summary-regime-naive-signature.md

For each trial: its parameters, its state, min(mean rise, mean fall) recomputed from its finished
chains (the objective since session 10), the value the study recorded, and per seed the campaign-0 rise and fall in sd of one half's pass rate and
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
    scored = {t.number: _rescore(store, runs.get(t.number)) for t in study.trials}
    trials = sorted(study.trials, key=lambda t: (scored[t.number] is None, -(scored[t.number] or (0,))[0]))
    print(f"# Study {args.study}: {sum(t.state.name == 'COMPLETE' for t in trials)} complete, "
          f"{sum(t.state.name == 'PRUNED' for t in trials)} pruned, {len(trials)} in all\n")
    print("Best first by **min(mean rise, mean fall)** in sd of one half, recomputed here from every "
          "finished chain's logged halves (signature.study_score, the objective since session 10); "
          "`value` is what the study itself recorded.\n")
    names = sorted({k for t in trials for k in t.params})
    print("| trial | state | " + " | ".join(names) + " | min of means | mean rise | mean fall | value | seeds "
          "| campaign-0 rise (sd) per seed | campaign-0 fall (sd) per seed | campaigns >= 2 sd |")
    print("|" + "---|" * (len(names) + 10))
    for t in trials:
        run = runs.get(t.number)
        history = {key: _history(store, run, f"objective/{key}") for key in
                   ("campaign0_rise_sd", "campaign0_fall_sd", "campaigns_scoring_2sd")} if run else {}
        cells = [str(t.number), t.state.name.lower()]
        cells += [f"{t.params[k]:.2e}" if isinstance(t.params.get(k), float) else str(t.params.get(k, ""))
                  for k in names]
        cells += [f"{v:+.2f}" for v in scored[t.number]] if scored[t.number] else ["", "", ""]
        value = t.value if t.value is not None else (t.intermediate_values or {None: None}).get(
            max(t.intermediate_values) if t.intermediate_values else None)
        cells.append("" if value is None else f"{value:.2f}")
        cells.append(str(len(history.get("campaign0_rise_sd", []))))
        for key in ("campaign0_rise_sd", "campaign0_fall_sd"):
            cells.append(" ".join(f"{v:+.1f}" for v in history.get(key, [])))
        cells.append(" ".join(f"{v:.0f}" for v in history.get("campaigns_scoring_2sd", [])))
        print("| " + " | ".join(cells) + " |")


def _rescore(store, run):
    """study_score over the trial's finished chains (every finished campaign of each), or None."""
    from selfregress.errors import UserError
    from selfregress.signature import chain_signatures, study_score

    if run is None:
        return None
    chains = []
    for chain in store.find_runs(f"tags.mlflow.parentRunId = '{run.info.run_id}'"):
        if chain.info.status != "FINISHED":
            continue
        try:
            chains.append(chain_signatures(store, store.campaign_runs(chain.data.tags["chain_id"], finished=True)))
        except UserError:
            continue
    return study_score(chains) if chains else None


def _history(store, run, key: str) -> list[float]:
    values = store.metric_history(run.info.run_id, key)
    return [values[s] for s in sorted(values)]


if __name__ == "__main__":
    main()
