"""The report split's evaluations of a finished campaign: its start, its peak and its end.

The peak is the step of the highest *selection* pass@1 (the eval split's curve, ES's rule, the
earliest on a tie); its checkpoint is then measured on the disjoint report split, so the
cross-fit gap report(peak) - report(end) carries no max-of-noisy-evaluations bias. The same three
checkpoints are also evaluated on the RL task set (``rlset/*``, its first ``report_tasks`` tasks,
``report_samples`` each): how far the policy fits the tasks it trains on (issue #16's
over-optimisation question).

Reads: the campaign's checkpoints (or the policy in memory for its end). Writes: ``report/*`` and
``rlset/*`` metrics on the (finished) campaign run, at its last step. A campaign whose metrics are
logged is never evaluated again: a resumed chain, or ``report`` on an old chain, only fills in
what is missing. Nothing here feeds a decision: the controllers read the selection curve only.
"""

from __future__ import annotations

from selfregress import metric_keys as K
from selfregress.chain_config import ChainConfig
from selfregress.controllers import CampaignRecord, peak_step
from selfregress.records import read_campaign, report_split, split_tasks
from selfregress.tracking import Run

REPORT = 3   # the purpose in step_seed: (seed, campaign, step, purpose), beside TRAIN, EVAL, FISHER


def report_steps(record: CampaignRecord, min_delta: float = 0.0) -> dict[str, int]:
    """point -> step: start 0, peak by the selection curve (ES's rule, with the chain's
    ``es_min_delta``: so under ``checkpoints=peaks`` the peak's checkpoint exists), end the last step."""
    return {"start": 0, "peak": peak_step(record.pass_at_1, min_delta), "end": record.last_step}


def has_report(record: CampaignRecord) -> bool:
    """Whether the campaign's report figures are logged (``report/peak_step`` is logged with them, in
    one batch, even when the peak has no checkpoint to evaluate)."""
    return K.REPORT_PEAK_STEP in record.metrics


class ReportEvaluator:
    """Evaluates finished campaigns on the report split and the RL set; one per chain.

    A checkpoint already measured in this chain (campaign c's end is campaign c + 1's start under
    ``Last``, and its peak under ES's roll-forward) is measured once: the cache is keyed by the
    checkpoint's LoggedModel id, and is filled from what earlier campaigns logged, so a resumed
    chain reuses exactly the numbers an uninterrupted one would have.
    """

    def __init__(self, config: ChainConfig, store, grader):
        self.config, self.store, self.grader = config, store, grader
        rl_tasks, _ = split_tasks(config)
        # The RL set measured the same way as the report split: as many tasks (its first ones: a
        # step draws its prompts uniformly from the whole set) and as many samples per task.
        self.rl_tasks = rl_tasks[:config.report_tasks]
        self.report_tasks = report_split(config)
        self.cache: dict[str, dict[str, float]] = {}   # model id -> {pass_at_1, successes, trials} x 2

    def remember(self, record: CampaignRecord) -> None:
        """Fill the cache from a campaign's logged report metrics."""
        if not has_report(record):
            return
        for point, step in report_steps(record, self.config.es_min_delta).items():
            if step in record.checkpoints:
                self.cache[record.checkpoints[step]] = {
                    key: record.metrics[keys[point]] for key, keys in _KEYS.items() if keys[point] in record.metrics}

    def campaign(self, record: CampaignRecord, in_memory: dict | None = None) -> CampaignRecord:
        """Log the campaign's report and RL-set figures unless it has them; return it read back.

        ``in_memory``: step -> a policy already loaded (the campaign's end, right after training).
        A peak without a checkpoint (``checkpoints=none``) has no report figure: its keys are absent.
        """
        from selfregress.policy import load_policy

        if has_report(record) or not self.config.report_tasks:
            self.remember(record)
            return record
        metrics: dict[str, float] = {}
        steps = report_steps(record, self.config.es_min_delta)
        for point, step in steps.items():
            model_id = record.checkpoints.get(step)
            if model_id is None:
                continue
            if model_id not in self.cache:
                policy = (in_memory or {}).get(step)
                if policy is None:
                    policy = load_policy(f"models:/{model_id}", **self.config.policy_options())
                self.cache[model_id] = self.measure(policy, record.index, step)
            metrics.update({keys[point]: self.cache[model_id][key] for key, keys in _KEYS.items()})
        metrics[K.REPORT_PEAK_STEP] = float(steps["peak"])
        Run(self.store, record.run_id).log_metrics(metrics, step=record.last_step)
        return read_campaign(self.store, self.store.get_run(record.run_id))

    def measure(self, policy, campaign: int, step: int) -> dict[str, float]:
        """pass@1 with counts on the report split and on the RL set, sampled as the chain samples."""
        from selfregress.evaluation import evaluate
        from selfregress.step import step_seed

        c = self.config
        options = dict(samples=c.report_samples, temperature=c.temperature, top_p=c.top_p,
                       max_new_tokens=c.max_new_tokens, seed=step_seed(c.seed, campaign, step, REPORT))
        report = evaluate(policy, self.report_tasks, self.grader, **options)
        rlset = evaluate(policy, self.rl_tasks, self.grader, **options)
        return {"report_pass": report.pass_at_1, "report_successes": float(report.successes.sum()),
                "report_trials": float(report.trials), "rlset_pass": rlset.pass_at_1,
                "rlset_successes": float(rlset.successes.sum()), "rlset_trials": float(rlset.trials)}


_KEYS = {"report_pass": K.REPORT_PASS_AT_1, "report_successes": K.REPORT_SUCCESSES,
         "report_trials": K.REPORT_TRIALS, "rlset_pass": K.RLSET_PASS_AT_1,
         "rlset_successes": K.RLSET_SUCCESSES, "rlset_trials": K.RLSET_TRIALS}


def fill_missing(store, chain_id: str, config: ChainConfig, grader) -> list[CampaignRecord]:
    """``report``'s lazy path: evaluate an old chain's campaigns that lack their report figures,
    and log the chain's ``report/end_pass_at_1``. Returns the chain's records, read back."""
    from selfregress.records import campaign_records

    evaluator = ReportEvaluator(config, store, grader)
    records = campaign_records(store, chain_id)
    for r in records:
        evaluator.remember(r)
    records = [evaluator.campaign(r) for r in records]
    return records
