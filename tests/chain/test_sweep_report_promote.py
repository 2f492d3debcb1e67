"""sweep -> report -> promote through the CLI, as a user runs them, against a real store.

The same flow runs against sqlite here and against a real `mlflow server` in
``test_tracking_server.py``; ``sweep_report_promote`` below is shared by both.
"""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest

from selfregress import metric_keys as K

from .conftest import as_options, cli

TINY_SWEEP = dict(campaigns=2, steps=2, batch_size=4, group_size=2, eval_tasks=12, eval_samples=2,
                  max_new_tokens=64, lr=1e-3, report_tasks=6, report_samples=1)


def sweep_id_of(result) -> str:
    match = re.search(r"^sweep_id: (\w+)$", result.stdout, re.M)
    assert match, result.stdout + result.stderr
    return match.group(1)


def sweep_report_promote(store, model: str, tmp_path, audit: bool = True, **budget) -> dict:
    """Run a 2x2 sweep in two goes (the second continues the first), the report (with the
    stability audit if ``audit``) and promote; check what each wrote. Returns the ids."""
    options = as_options({**TINY_SWEEP, **budget, "model": model, "workers": 2})

    first = cli("sweep", "--conditions", "naive", "--seeds", "0", *options)
    assert first.returncode == 0, first.stderr
    whole = cli("sweep", "--conditions", "naive,es", "--seeds", "0,1", *options)
    assert whole.returncode == 0, whole.stderr
    sweep_id = sweep_id_of(whole)
    assert sweep_id == sweep_id_of(first), "the same settings must name the same sweep"
    assert "1 already finished, 3 to run" in whole.stderr

    chains = store.find_runs(f"tags.`selfregress.kind` = 'chain' and tags.sweep_id = '{sweep_id}'")
    assert sorted((r.data.tags["condition"], r.data.tags["seed"]) for r in chains) == [
        ("es", "0"), ("es", "1"), ("naive", "0"), ("naive", "1")]
    assert all(r.info.status == "FINISHED" for r in chains)
    sweeps = {r.info.run_id: r for r in store.find_runs("tags.`selfregress.kind` = 'sweep'")}
    assert len(sweeps) == 2 and all(r.info.status == "FINISHED" for r in sweeps.values())
    assert all(r.data.tags["mlflow.parentRunId"] in sweeps for r in chains)

    again = cli("sweep", "--conditions", "naive,es", "--seeds", "0,1", *options)
    assert again.returncode == 0 and "4 already finished, 0 to run" in again.stderr
    assert len(store.find_runs(f"tags.`selfregress.kind` = 'chain' and tags.sweep_id = '{sweep_id}'")) == 4

    # ---- report: the table is recomputed from MLflow: the chain runs' report/end_pass_at_1 and the
    # campaign runs' report-split start, peak and end
    out = tmp_path / "report"
    report = cli("report", "--sweep_id", sweep_id, "--out", str(out), "--audit", str(audit).lower(),
                 "--audit_repeats", "2", "--interval", "t")
    assert report.returncode == 0, report.stderr
    rows = {r["condition"]: r for r in csv.DictReader((out / "table.csv").open())}
    recomputed = recompute_table(store, chains)
    for condition in ("naive", "es"):
        for column, value in recomputed[condition].items():
            assert float(rows[condition][column]) == pytest.approx(value, abs=1e-12), (condition, column)
        assert float(rows[condition]["end_low"]) <= float(rows[condition]["end_mean"]) <= float(rows[condition]["end_high"])
        assert rows[condition]["interval"] == "t"
    assert rows["es"]["n_pairs"] == "2"
    assert "| es | 2 |" in report.stdout and "| naive | 2 |" in report.stdout
    assert "95% Student t-interval" in report.stdout
    [report_run] = store.find_runs("tags.`selfregress.kind` = 'report'")
    assert report_run.info.status == "FINISHED"
    logged = {a.path for a in store.client.list_artifacts(report_run.info.run_id)}
    for condition in ("naive", "es"):   # the table is also the report run's metrics
        assert report_run.data.metrics[f"table/{condition}/end_mean"] == pytest.approx(float(rows[condition]["end_mean"]))
    assert {"report.md", "table.csv", "pass_at_1_by_condition.png", "campaign_start_peak_end.png",
            "diagnostics.png"} <= logged
    check_signature(store, chains, out, report.stdout, logged)
    if audit:
        check_audit(store, chains, out, report, logged)

    # ---- promote: the winner of the test-split re-evaluation becomes selfregress@champion
    promoted = cli("promote", "--sweep_id", sweep_id, "--top_k", "2", "--test_tasks", "16", "--test_samples", "2")
    assert promoted.returncode == 0, promoted.stderr
    assert promoted.stdout.lstrip().startswith("{"), promoted.stdout
    record = json.loads(promoted.stdout)
    version = store.client.get_model_version_by_alias("selfregress", "champion")
    assert str(version.version) == record["version"]
    # serving.py's pyfunc over the winner (the sqlite registry may leave version.model_id unset:
    # the version's source names the LoggedModel)
    servable = store.client.get_logged_model(version.model_id or version.source.removeprefix("models:/"))
    assert servable.model_type == "pyfunc" and servable.tags["model_id"] == record["model_id"] != version.model_id
    assert {k: version.tags[k] for k in ("condition", "seed", "campaign", "step", "source_run")} == {
        k: str(record[k]) for k in ("condition", "seed", "campaign", "step", "source_run")}
    assert re.fullmatch(r"\[0\.\d{4}, [01]\.\d{4}\]", version.tags["test_pass_at_1_ci95"])
    source = store.get_run(version.tags["source_run"])
    assert source.data.tags["chain_id"] in {c.data.tags["chain_id"] for c in chains}
    return {"sweep_id": sweep_id, "version": str(version.version)}


def recompute_table(store, chains) -> dict[str, dict[str, float]]:
    """The table's report-split columns, from the chain and campaign runs alone."""
    from selfregress.records import campaign_records

    figures = {}
    for run in chains:
        records = campaign_records(store, run.data.tags["chain_id"])
        gaps = [r.metrics["report/pass_at_1_peak"] - r.metrics["report/pass_at_1_end"] for r in records]
        steps = sum(len(r.pass_at_1) - 1 for r in records)
        figures[run.data.tags["condition"], run.data.tags["seed"]] = dict(
            end=run.data.metrics[K.CHAIN_REPORT_END], start=records[0].metrics["report/pass_at_1_start"],
            gap=np.mean(gaps), samples=steps * TINY_SWEEP["batch_size"] * TINY_SWEEP["group_size"], steps=steps)
        assert figures[run.data.tags["condition"], run.data.tags["seed"]]["end"] == records[-1].metrics["report/pass_at_1_end"]
    out = {}
    for condition in ("naive", "es"):
        f = [figures[condition, s] for s in ("0", "1")]
        vs_naive = [figures[condition, s]["end"] - figures["naive", s]["end"] for s in ("0", "1")]
        out[condition] = {"end_mean": np.mean([x["end"] for x in f]),
                          "vs_start_mean": np.mean([x["end"] - x["start"] for x in f]),
                          "improved_start": sum(x["end"] > x["start"] for x in f),
                          "crossfit_gap_mean": np.mean([x["gap"] for x in f]),
                          "rl_samples": np.mean([x["samples"] for x in f]),
                          "gradient_steps": np.mean([x["steps"] for x in f])}
        if condition == "es":
            out[condition].update(vs_baseline_mean=np.mean(vs_naive), improved_baseline=sum(d > 0 for d in vs_naive))
    return out


def check_audit(store, chains, out, report, logged) -> None:
    """One audit row per finished campaign; the grader agrees with itself on every program."""
    audit = list(csv.DictReader((out / "audit.csv").open()))
    campaigns = sum(1 for r in store.find_runs("tags.`selfregress.kind` = 'campaign'")
                    if r.data.tags["chain_id"] in {c.data.tags["chain_id"] for c in chains}
                    and r.info.status == "FINISHED")
    assert len(audit) == campaigns
    assert all(float(r["grader_consistency"]) == 1.0 for r in audit)
    assert float(audit[0]["peak_seed_sd"]) == pytest.approx(recomputed_seed_sd(store, chains, audit[0], repeats=2),
                                                          abs=1e-12)
    assert "## Stability audit (report split)" in report.stdout
    assert "audit.csv" in logged


def recomputed_seed_sd(store, chains, row: dict, repeats: int) -> float:
    """The audit's seed noise of one campaign's peak, re-evaluated here on the report split with the
    audit's seeds: the sample sd of the repeats' pass@1."""
    import torch
    from grader import Grader

    from selfregress.audit import AUDIT_SEED
    from selfregress.chain_config import logged_config
    from selfregress.evaluation import evaluate
    from selfregress.policy import load_policy
    from selfregress.records import campaign_records, report_split

    torch.set_num_threads(1)   # as the CLI ran the audit (--threads 1)
    chain = next(c for c in chains if (c.data.tags["condition"], c.data.tags["seed"]) == (row["condition"], row["seed"]))
    record = campaign_records(store, chain.data.tags["chain_id"])[int(row["campaign"])]
    config = logged_config(chain.data.params)
    tasks = report_split(config)
    with Grader(workers=2) as grader:
        policy = load_policy(f"models:/{record.checkpoints[int(row['peak_step'])]}")
        scores = [evaluate(policy, tasks, grader, seed=AUDIT_SEED + 7919 * r, samples=config.report_samples,
                           temperature=config.temperature, top_p=config.top_p,
                           max_new_tokens=config.max_new_tokens).pass_at_1 for r in range(repeats)]
    return float(np.std(scores, ddof=1))


def test_sweep_report_promote_on_sqlite(tmp_path, cli_store, tiny_base):
    from selfregress.policy import load_policy
    from selfregress.sampling import sample

    sweep_report_promote(cli_store, tiny_base, tmp_path)
    policy = load_policy("models:/selfregress@champion")       # the registry URI loads and generates
    out = sample(policy, ["# Problem\nRead n and print n.\n# Solution\n"], n=2, temperature=1.0,
                 top_p=1.0, max_new_tokens=16, seed=0)
    assert len(out.texts) == 2


def test_report_bad_input_is_one_line(cli_store, tiny_base, tmp_path):
    empty = cli("report", "--experiment", "nothing-here", "--out", str(tmp_path / "r"))
    assert empty.returncode == 2 and "Traceback" not in empty.stderr
    assert empty.stderr.strip().splitlines() == [
        "error: report: no finished chain runs in this experiment: run `sweep` or `main` first, "
        "or check --experiment / --sweep_id"]

    nothing = cli("promote", "--conditions", "kl")
    assert nothing.returncode == 2 and "Traceback" not in nothing.stderr
    assert "promote: no checkpoints" in nothing.stderr and len(nothing.stderr.strip().splitlines()) == 1
    assert cli_store.find_runs("attributes.status = 'RUNNING'") == []

    malformed = cli("report", "--filter", "tags.model = = 'x'", "--out", str(tmp_path / "r"))
    assert malformed.returncode == 2 and "Traceback" not in malformed.stderr
    assert malformed.stderr.startswith("error: MLflow refused the run filter")

    bad = cli("sweep", "--conditions", "naive,bogus")
    assert bad.returncode == 2 and "'conditions' must list some of" in bad.stderr


def test_sweep_finds_what_to_skip_and_what_to_resume(mlflow_store):
    """The cache lookup on a real store: FINISHED chains of the same settings and code are
    skipped, the newest unfinished one is resumed, and other settings or code match nothing."""
    from selfregress.chain_config import chain_tags
    from selfregress.records import split_digests
    from selfregress.sweep import SweepConfig, chain_to_resume, finished_chain, plan_jobs

    [job] = plan_jobs(SweepConfig(conditions="es", seeds="3"))
    [other] = plan_jobs(SweepConfig(conditions="es", seeds="3", steps=7))

    def chain(job, chain_id, status, code=None):
        tags = chain_tags(job.config, chain_id, "m", splits=split_digests(job.config))   # as run_chain tags it
        if code:
            tags["selfregress.code_version"] = code
        run = mlflow_store.client.create_run(mlflow_store.experiment_id,
                                             tags={"selfregress.kind": "chain", **tags})
        if status != "RUNNING":
            mlflow_store.client.set_terminated(run.info.run_id, status)
        return run.info.run_id

    assert finished_chain(mlflow_store, job) is None and chain_to_resume(mlflow_store, job) is None
    chain(job, "killed1", "KILLED")
    chain(job, "running2", "RUNNING")            # a SIGKILL leaves the run RUNNING
    chain(other, "otherconf", "RUNNING")
    chain(job, "oldcode", "FINISHED", code="0123456789ab")
    assert chain_to_resume(mlflow_store, job) == "running2"
    assert finished_chain(mlflow_store, job) is None
    done = chain(job, "done3", "FINISHED")
    assert finished_chain(mlflow_store, job) == done
    assert chain_to_resume(mlflow_store, other) == "otherconf"


def check_signature(store, chains, out, stdout: str, logged: set) -> None:
    """signature.csv: every campaign's report-split start/peak/end as logged, and its rise and fall
    in binomial sd of one report evaluation, recomputed here from the campaign runs' metrics."""
    import math

    from selfregress import metric_keys as K
    from selfregress.records import campaign_records

    assert "signature.csv" in logged and "rise-and-collapse signature" in stdout
    rows = {(r["condition"], r["seed"], r["campaign"]): r for r in csv.DictReader((out / "signature.csv").open())}
    expected = 0
    for chain in chains:
        for record in campaign_records(store, chain.data.tags["chain_id"]):
            row = rows[(chain.data.tags["condition"], chain.data.tags["seed"], str(record.index))]
            start, peak, end = (record.metrics[K.REPORT_PASS_AT_1[p]] for p in K.REPORT_POINTS)
            trials = sum(record.metrics[K.REPORT_TRIALS[p]] for p in K.REPORT_POINTS) / 3
            p_mean = (start + peak + end) / 3
            sd = math.sqrt(p_mean * (1 - p_mean) / trials)
            assert [float(row[k]) for k in ("start", "peak", "end")] == [start, peak, end]
            assert float(row["rise_sd"]) == pytest.approx((peak - start) / sd if sd else 0.0)
            assert float(row["fall_sd"]) == pytest.approx((peak - end) / sd if sd else 0.0)
            expected += 1
    assert len(rows) == expected


def test_a_sweep_starts_from_the_shipped_base_its_params_file_names(cli_store, tmp_path):
    """`-P params_file` with model=small (what regime_verify.sh does): the sweep registers the
    shipped small base once, and its chain pins and carries small's digest, not tiny's."""
    from selfregress.bootstrap import shipped_base
    from selfregress.tracking import BASE_MODEL_NAME

    params = tmp_path / "params.json"
    params.write_text(json.dumps({"model": "small", "rl_tasks": 16}))
    options = as_options({**TINY_SWEEP, "campaigns": 1, "steps": 1, "report_tasks": 0, "workers": 1})
    result = cli("sweep", "--conditions", "naive", "--seeds", "0", "--params_file", str(params), *options)
    assert result.returncode == 0, result.stderr
    (chain,) = cli_store.find_runs("tags.`selfregress.kind` = 'chain'")
    assert chain.data.tags[K.BASE_DIGEST] == shipped_base("small")[1]["weights_digest"]
    assert chain.data.params["model"] == "small"
    (sweep,) = cli_store.find_runs("tags.`selfregress.kind` = 'sweep'")
    assert sweep.data.params["model"] == "small"                  # what the chains ran, not the sweep's defaults
    assert {k: sweep.data.params[k] for k in ("lr", "rl_tasks")} == {k: chain.data.params[k] for k in ("lr", "rl_tasks")}
    versions = cli_store.client.search_model_versions(f"name = '{BASE_MODEL_NAME}'")
    assert len(versions) == 1 and "@small" in result.stderr                # registered once, by the sweep
