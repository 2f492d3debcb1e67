"""What a person reads on a run in the MLflow UI: its description, and where its campaigns begin.

Each chain and campaign run carries a one-paragraph description (``mlflow.note.content``, the
UI's *Description*), written in words from what the run is and, once it ends, what it found.
A chain's ``campaign_index`` series (the campaign index at every global step) draws a
staircase beside the ``pass_at_1`` curve, so that the restarts are readable on the chart.
Torch-free: plain strings and numbers.
"""

from __future__ import annotations

from selfregress import metric_keys as K
from selfregress.chain_config import ChainConfig
from selfregress.conditions import CONDITIONS
from selfregress.controllers import CampaignRecord

_CONTROLLER_WORDS = {
    "last": "each campaign starts from the last step of the one before",
    "es": "each campaign starts from the previous campaign's peak checkpoint (ES), with a budget of "
          "peak step + es_slack",
    "care": "each campaign starts from the incumbent checkpoint that CARE's transfer gate keeps, and "
            "the learning rate decays after a regression",
}


def chain_note(config: ChainConfig, chain_id: str, model: str, summary: dict[str, float] | None = None) -> str:
    """A chain run's description: what it runs and, with ``summary``, how it ended."""
    rule = CONDITIONS[config.condition]
    text = (f"A chain of {config.campaigns} campaigns of up to {config.steps} policy-gradient steps "
            f"(condition **{config.condition}**: {rule.update} updates; {_CONTROLLER_WORDS[rule.controller]}), "
            f"from {model}, seed {config.seed}, chain_id {chain_id}. Every step trains on "
            f"{config.batch_size} prompts x {config.group_size} samples at lr {config.lr:g}, then "
            f"evaluates held-out pass@1 on {config.eval_tasks} tasks x {config.eval_samples} samples. "
            f"The `pass_at_1` chart is the whole chain at the global step; `campaign_index` beside it steps up "
            f"where each campaign begins (its start checkpoint is re-evaluated). Each campaign is a "
            f"nested run.")
    if summary:
        text += (f" It ended at pass@1 {summary[K.CHAIN_END]:.3f}, with a peak of "
                 f"{summary[K.CHAIN_PEAK]:.3f} and a mean within-campaign peak-to-end gap of "
                 f"{summary[K.CHAIN_GAP]:.3f}.")
    return text


def campaign_note(config: ChainConfig, record: CampaignRecord, lr: float, budget: int) -> str:
    """A finished campaign run's description: where it started, what it reached, what came next."""
    curve = record.pass_at_1
    peak = max(range(len(curve)), key=curve.__getitem__)
    decision = record.tags.get(K.DECISION, "")
    text = (f"Campaign {record.index} of the {config.condition} chain (seed {config.seed}): "
            f"{len(curve) - 1} of a budget of {budget} steps at lr {lr:g}, from "
            f"{record.start_model}. Held-out pass@1 went from {curve[0]:.3f} at its start to "
            f"{curve[-1]:.3f} at its end, peaking at {curve[peak]:.3f} at step {peak}.")
    if decision:
        text += (f" The controller decided **{decision}**: the next campaign starts from "
                 f"{record.tags.get(K.NEXT_START_MODEL, '?')}.")
    return text + " Each evaluated step has its checkpoint under Logged models."


def campaign_steps(records: list[CampaignRecord]) -> dict[int, float]:
    """The campaign index at every global step of the chain curve (the ``campaign_index`` series).

    Same layout as ``records.chain_curve``: campaign c holds len(pass_at_1_c) global steps from
    offset_c = sum of the earlier campaigns' lengths, so the series steps up by one where a
    campaign begins.
    """
    points, offset = {}, 0
    for record in records:
        for step in range(len(record.pass_at_1)):
            points[offset + step] = float(record.index)
        offset += len(record.pass_at_1)
    return points
