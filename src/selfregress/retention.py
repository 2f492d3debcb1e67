"""Retention: which checkpoints keep their weights once a campaign is over, and how many bytes.

``retention=all`` (the default) keeps every checkpoint that ``checkpoints`` logged. Under
``retention=decisions``, once a campaign has ended (its decision logged) and its report-split
figures are logged (``report_eval``), only what a decision or a reader can load again stays:

- its start, step 0 (the previous campaign's end, peak or incumbent: kept there anyway);
- its selection peak, ``controllers.peak_step`` with the chain's ``es_min_delta``: ES's
  roll-forward, and the peak that ``report_eval`` and ``audit`` evaluate;
- its end: ``Last``'s next start, CARE's candidate, the report's and the audit's end;
- the checkpoint its decision names as the next start (ES's peak, CARE's incumbent).

The other steps' weights are deleted from the artifact store (``Store.delete_weights``). Their
LoggedModels, run links and metrics stay; each carries the tag ``selfregress.pruned=true``, and
the campaign run lists the steps in ``selfregress.pruned_steps``. ``records.read_campaign`` leaves
those steps out of ``CampaignRecord.checkpoints``, so nothing that loads a checkpoint (controllers,
``report_eval``, ``audit``, ``promote``'s top-k) can pick a pruned one.

Bytes: each checkpoint a campaign writes logs its files' size (``storage/checkpoint_bytes`` at its
step); the campaign logs their sum (``storage/bytes_written``) with its decision, and ``retain``
logs what is still stored (``storage/bytes_kept``); the chain run logs both summed over its
campaigns. ``storage/bytes_kept`` on a campaign run means retention is done: a resumed chain never
prunes a campaign twice, and finishes one that a kill cut short (deleting deleted files is a no-op).
Torch-free.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from selfregress import metric_keys as K
from selfregress.chain_config import ChainConfig
from selfregress.controllers import CampaignRecord, peak_step


def kept_steps(record: CampaignRecord, min_delta: float, next_start_id: str | None) -> set[int]:
    """The steps whose checkpoints a decision or the report can use: start, peak, end, next start."""
    steps = {0, peak_step(record.pass_at_1, min_delta), record.last_step}
    return steps | {s for s, model_id in record.checkpoints.items() if model_id == next_start_id}


def pruned_steps(tags: dict[str, str]) -> set[int]:
    """The steps a campaign run's ``selfregress.pruned_steps`` tag names (``retain`` writes it)."""
    return {int(s) for s in tags.get(K.PRUNED_STEPS, "").split(",") if s}


def retain(config: ChainConfig, store, record: CampaignRecord) -> CampaignRecord:
    """Apply the chain's ``retention`` to a finished campaign whose report figures are logged, and log its
    ``storage/bytes_kept``; returns the record as MLflow now holds it (pruned steps left out)."""
    if K.BYTES_KEPT in record.metrics:
        return record
    prune: list[int] = []
    if config.retention == "decisions":
        next_start = record.tags.get(K.NEXT_START_MODEL, "")
        keep = kept_steps(record, config.es_min_delta, store.model_id(next_start) if next_start else None)
        prune = sorted(set(record.checkpoints) - keep)
    for step in prune:
        store.delete_weights(record.checkpoints[step])
    sizes = store.metric_history(record.run_id, K.CHECKPOINT_BYTES)   # step -> bytes, of what it wrote
    kept = float(sum(size for step, size in sizes.items() if step in record.checkpoints and step not in prune))
    from selfregress.tracking import Run   # here: records (and so report --help) stay MLflow-free

    run = Run(store, record.run_id)
    tags = dict(record.tags)
    if prune:   # written once the files are gone: a kill before it leaves them listed, and retried
        tags[K.PRUNED_STEPS] = ",".join(map(str, sorted(pruned_steps(tags) | set(prune))))
        run.set_tags({K.PRUNED_STEPS: tags[K.PRUNED_STEPS]})
    run.log_metrics({K.BYTES_KEPT: kept}, step=record.last_step)
    checkpoints = {s: m for s, m in record.checkpoints.items() if s not in prune}
    return replace(record, checkpoints=checkpoints, tags=tags, metrics={**record.metrics, K.BYTES_KEPT: kept})


def storage_totals(records: list[CampaignRecord]) -> dict[str, float]:
    """The chain run's ``storage/*``: bytes written and kept, summed over its campaigns."""
    return {key: float(sum(r.metrics.get(key, 0.0) for r in records)) for key in (K.BYTES_WRITTEN, K.BYTES_KEPT)}


def folder_bytes(folder: str | Path) -> int:
    """The bytes of every file under ``folder`` (a checkpoint as it is uploaded)."""
    return sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file())
