"""A tiny chain under `accelerate launch --num_processes 2` on the gloo backend (CPU), for real.

Prompts and evaluation tasks are split across the two processes and the gradients
all-reduced; only the main process logs. The store must hold one complete chain: no run, step
or checkpoint twice, and every evaluation must count all tasks (both shards gathered).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from selfregress import metric_keys as K
from selfregress.records import campaign_records

from .conftest import TINY_CHAIN, as_options

ACCELERATE = Path(sys.executable).with_name("accelerate")


def test_two_process_chain_logs_once_and_completely(cli_store, tiny_base):
    options = as_options({**TINY_CHAIN, "model": tiny_base, "workers": 1, "condition": "es", "seed": 3})
    result = subprocess.run(
        # --multi_gpu is accelerate's torch.distributed launcher; without CUDA it runs on gloo.
        [str(ACCELERATE), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
         "--mixed_precision", "no", "--dynamo_backend", "no", "--num_cpu_threads_per_process", "1",
         "-m", "selfregress", "main", *options],
        capture_output=True, text=True, timeout=600, env={**os.environ})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("chain_id:") == 1          # printed by the main process only

    chains = cli_store.find_runs("tags.`selfregress.kind` = 'chain'")
    assert len(chains) == 1 and chains[0].info.status == "FINISHED"
    assert chains[0].data.tags["selfregress.processes"] == "2"
    chain_id = chains[0].data.tags["chain_id"]

    campaigns = cli_store.find_runs("tags.`selfregress.kind` = 'campaign'")
    assert sorted(r.data.tags["campaign"] for r in campaigns) == ["0", "1"]
    records = campaign_records(cli_store, chain_id)
    for record in records:
        for key in (K.PASS_AT_1, K.EVAL_TRIALS, K.TRAIN_REWARD_MEAN, K.TRAIN_LOSS):
            steps = [m.step for m in cli_store.client.get_metric_history(record.run_id, key)]
            assert len(steps) == len(set(steps)), f"{key} logged twice at a step"
        # 12 eval tasks x 2 samples: both processes' shards gathered at every step
        assert record.trials == [24] * len(record.pass_at_1)
        # rank 0's shard is the even-indexed tasks (0, 2, ...), rank 1's the odd ones: 6 x 2 samples
        even = cli_store.metric_history(record.run_id, K.EVAL_TRIALS_EVEN)
        assert [even[s] for s in sorted(even)] == [12.0] * len(record.pass_at_1)
        assert sorted(record.checkpoints) == list(range(len(record.pass_at_1)))
        assert record.tags["controller/decision"] in ("continue", "rollforward_peak")

    models = cli_store.client.search_logged_models(experiment_ids=[cli_store.experiment_id])
    linked = {m for r in records for m in r.checkpoints.values()}   # step 0 links an earlier one
    assert len(models) == len(linked), "a checkpoint was written by more than one process"
    chain_curve = cli_store.metric_history(chains[0].info.run_id, K.PASS_AT_1)
    assert len(chain_curve) == sum(len(r.pass_at_1) for r in records)
