"""The report split's evaluations of a finished campaign: its start, its peak and its end.

The peak is the step of the highest *selection* pass@1 (the eval split's curve, ES's rule, the
earliest on a tie); its checkpoint is then measured on the disjoint report split, so the
cross-fit gap report(peak) - report(end) carries no max-of-noisy-evaluations bias. The same three
checkpoints are also evaluated on the RL task set (``rlset/*``, its first ``report_tasks`` tasks,
``report_samples`` each; under ``campaign_tasks`` the campaign's own draw): how far the policy
fits the tasks it trains on (issue #16's over-optimisation question).

Reads: the campaign's checkpoints (or the policy in memory for its end). Writes: ``report/*`` and
``rlset/*`` metrics on the (finished) campaign run, at its last step. A campaign whose metrics are
logged is never evaluated again: a resumed chain, or ``report`` on an old chain, only fills in
what is missing. Nothing here feeds a decision: the controllers read the selection curve only.
"""

from __future__ import annotations

from selfregress import metric_keys as K
from selfregress.chain_config import ChainConfig
from selfregress.controllers import CampaignRecord, peak_step
from selfregress.records import campaign_rl_tasks, read_campaign, report_split, split_tasks
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
    checkpoint's LoggedModel id (and, for the RL set under ``campaign_tasks``, by the campaign,
    whose draw it is measured on), and is filled from what earlier campaigns logged, so a resumed
    chain reuses exactly the numbers an uninterrupted one would have.
    """

    def __init__(self, config: ChainConfig, store, grader):
        self.config, self.store, self.grader = config, store, grader
        self.rl_pool, _ = split_tasks(config)
        self.report_tasks = report_split(config)
        self.cache: dict[tuple, dict[str, float]] = {}   # (split, model id, RL draw) -> figures

    def _key(self, split: str, model_id: str, index: int) -> tuple:
        return split, model_id, index if split == "rlset" and self.config.campaign_tasks else -1

    def rl_tasks(self, index: int) -> list:
        """The RL set measured the same way as the report split: as many tasks (its first ones: a
        step draws its prompts uniformly from the whole set) and as many samples per task."""
        return campaign_rl_tasks(self.config, self.rl_pool, index)[:self.config.report_tasks]

    def remember(self, record: CampaignRecord) -> None:
        """Fill the cache from a campaign's logged report metrics."""
        if not has_report(record):
            return
        for point, step in report_steps(record, self.config.es_min_delta).items():
            if step in record.checkpoints:
                for split, names_of in _KEYS.items():
                    figures = {key: record.metrics[names[point]] for key, names in names_of.items()
                               if names[point] in record.metrics}
                    if figures:
                        self.cache[self._key(split, record.checkpoints[step], record.index)] = figures

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
            keys = {split: self._key(split, model_id, record.index) for split in _KEYS}
            missing = [split for split in _KEYS if keys[split] not in self.cache]
            if missing:
                policy = (in_memory or {}).get(step)
                if policy is None:
                    policy = load_policy(f"models:/{model_id}", **self.config.policy_options())
                for split in missing:
                    self.cache[keys[split]] = self.measure(policy, record.index, step, split)
            for split, figures in _KEYS.items():
                metrics.update({names[point]: self.cache[keys[split]][key] for key, names in figures.items()})
        metrics[K.REPORT_PEAK_STEP] = float(steps["peak"])
        Run(self.store, record.run_id).log_metrics(metrics, step=record.last_step)
        return read_campaign(self.store, self.store.get_run(record.run_id))

    def measure(self, policy, campaign: int, step: int, split: str) -> dict[str, float]:
        """pass@1 with counts on the report split or on the campaign's RL set (``split``: report |
        rlset), sampled as the chain samples. The seed depends on (campaign, step) only, so the two
        splits' figures do not depend on which was measured first, or in which campaign's call."""
        from selfregress.evaluation import evaluate
        from selfregress.step import step_seed

        c = self.config
        tasks = self.report_tasks if split == "report" else self.rl_tasks(campaign)
        result = evaluate(policy, tasks, self.grader, samples=c.report_samples, temperature=c.temperature,
                          top_p=c.top_p, max_new_tokens=c.max_new_tokens,
                          seed=step_seed(c.seed, campaign, step, REPORT))
        return {"pass": result.pass_at_1, "successes": float(result.successes.sum()),
                "trials": float(result.trials)}


_KEYS = {"report": {"pass": K.REPORT_PASS_AT_1, "successes": K.REPORT_SUCCESSES, "trials": K.REPORT_TRIALS},
         "rlset": {"pass": K.RLSET_PASS_AT_1, "successes": K.RLSET_SUCCESSES, "trials": K.RLSET_TRIALS}}


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
