"""A sweep's chains step by step, as markdown: issue #18's pilot table (and any small sweep's).

    MLFLOW_TRACKING_URI=sqlite:////work/pilot18/mlflow.db \
        python studies/pilot_summary.py --sweep_id 6ef297e21f > studies/pilot18/summary.md

Per FINISHED chain (condition, seed) and campaign: the selection split's pass@1 at every step with
its counts, the RL batch's mean reward and completion length at every step, the report split's and
the RL set's pass@1 at the campaign's start, selection peak and end (with counts), and the
campaign's seconds per step by phase (``time/*``: its totals over the campaign, divided by its
steps; step 0's evaluation counted in). Nothing is recomputed: every figure is a logged metric.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

PHASES = ("sampling", "grading", "update", "evaluation", "tracking")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sweep_id", required=True)
    args = parser.parse_args()

    from selfregress import metric_keys as K
    from selfregress.records import campaign_records
    from selfregress.tracking import connect

    store = connect()
    chains = store.find_runs(f"tags.`selfregress.kind` = 'chain' and tags.sweep_id = '{args.sweep_id}' "
                             "and attributes.status = 'FINISHED'")
    chains.sort(key=lambda r: (r.data.tags.get("condition", ""), int(r.data.tags.get("seed", 0))))
    print(f"# Sweep {args.sweep_id}: {len(chains)} finished chains\n")
    for chain in chains:
        tags = chain.data.tags
        print(f"## {tags.get('condition')} seed {tags.get('seed')}: chain run `{chain.info.run_id}`, "
              f"{(chain.info.end_time - chain.info.start_time) / 60000:.1f} min\n")
        for record in campaign_records(store, tags[K.CHAIN_ID]):
            history = {key: store.metric_history(record.run_id, key)
                       for key in (K.TRAIN_REWARD_MEAN, K.TRAIN_RESPONSE_LENGTH)}
            print(f"Campaign {record.index} (run `{record.run_id}`), selection pass@1 by step "
                  "(successes/trials), RL batch reward and completion tokens:\n")
            print("| step | selection pass@1 | train reward | completion tokens |\n|---|---|---|---|")
            for step, (p, s, t) in enumerate(zip(record.pass_at_1, record.successes, record.trials)):
                reward = history[K.TRAIN_REWARD_MEAN].get(step)
                length = history[K.TRAIN_RESPONSE_LENGTH].get(step)
                print(f"| {step} | {p:.3f} ({s}/{t}) | {'' if reward is None else f'{reward:.3f}'} | "
                      f"{'' if length is None else f'{length:.0f}'} |")
            m = record.metrics
            print(f"\nReport split and RL set (selection peak at step {m.get(K.REPORT_PEAK_STEP, float('nan')):.0f}):\n")
            print("| point | report pass@1 | RL-set pass@1 |\n|---|---|---|")
            for point in K.REPORT_POINTS:
                cells = []
                for rate, wins, trials in ((K.REPORT_PASS_AT_1, K.REPORT_SUCCESSES, K.REPORT_TRIALS),
                                           (K.RLSET_PASS_AT_1, K.RLSET_SUCCESSES, K.RLSET_TRIALS)):
                    cells.append(f"{m[rate[point]]:.3f} ({m[wins[point]]:.0f}/{m[trials[point]]:.0f})"
                                 if rate[point] in m else "n/a")
                print(f"| {point} | {' | '.join(cells)} |")
            steps = max(record.last_step, 1)
            phases = {p: m.get(f"{K.TIME_PREFIX}{p}") for p in PHASES}
            print("\nSeconds per step: " + ", ".join(f"{p} {v / steps:.1f}" for p, v in phases.items()
                                                     if v is not None)
                  + f"; total {sum(v for v in phases.values() if v is not None) / steps:.1f}\n")


if __name__ == "__main__":
    main()
