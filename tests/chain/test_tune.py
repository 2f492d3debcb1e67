"""A tiny Optuna study: 4 trials, resumed to 6, trials as nested runs, best params feed `main`."""

from __future__ import annotations

import json

import optuna
import pytest

from selfregress.config import parse
from selfregress.errors import UserError
from selfregress.tune import TuneConfig, check_storage, run_study

from .conftest import as_options, cli


def tiny_study(tmp_path, n_trials: int) -> TuneConfig:
    return parse(TuneConfig, {"controller": "es", "n_trials": n_trials, "seeds": "100",
                              "storage": f"sqlite:///{tmp_path}/optuna.db", "campaigns": 1, "steps": 1,
                              "eval_tasks": 4, "out": str(tmp_path / "best.json")})


def test_study_resumes_and_its_best_params_feed_main(tmp_path, cli_store, tiny_base):
    from grader import Grader

    with Grader(workers=2) as grader:
        run_study(tiny_study(tmp_path, 4), cli_store, grader, tiny_base, log=lambda m: None)
        study = optuna.load_study(study_name="selfregress-es", storage=f"sqlite:///{tmp_path}/optuna.db")
        assert sum(t.state.is_finished() for t in study.trials) == 4
        best = run_study(tiny_study(tmp_path, 6), cli_store, grader, tiny_base, log=lambda m: None)

    study = optuna.load_study(study_name="selfregress-es", storage=f"sqlite:///{tmp_path}/optuna.db")
    assert len(study.trials) == 6 and all(t.state.is_finished() for t in study.trials)
    tune_runs = cli_store.find_runs("tags.`selfregress.kind` = 'tune'")
    assert len(tune_runs) == 1 and tune_runs[0].info.status == "FINISHED"
    trials = cli_store.find_runs("tags.`selfregress.kind` = 'trial'")
    assert sorted(int(r.data.tags["trial"]) for r in trials) == list(range(6))
    assert all(r.data.tags["mlflow.parentRunId"] == tune_runs[0].info.run_id for r in trials)
    finished = [t for t in study.trials if t.state.name == "COMPLETE"]
    by_number = {int(r.data.tags["trial"]): r for r in trials}
    for t in finished:
        assert by_number[t.number].data.params["es_slack"] == str(t.params["es_slack"])
        assert by_number[t.number].data.metrics["objective/mean_end_pass_at_1"] == pytest.approx(t.value)
    artifacts = {f.path for f in cli_store.client.list_artifacts(tune_runs[0].info.run_id, "optuna")}
    assert "optuna/optimization_history.png" in artifacts

    written = json.loads((tmp_path / "best.json").read_text())
    assert written == best and written["condition"] == "es"
    result = cli("main", "--params_file", str(tmp_path / "best.json"),
                 *as_options({"model": tiny_base, "campaigns": 1, "steps": 1, "eval_tasks": 4,
                              "batch_size": 2, "group_size": 2, "max_new_tokens": 32, "report_tasks": 4,
                              "report_samples": 1}))
    assert result.returncode == 0, result.stderr
    chain = cli_store.find_runs("tags.`selfregress.kind` = 'chain' and tags.condition = 'es' "
                                "and tags.seed = '0'")[0]
    for key in ("es_slack", "es_patience", "es_min_delta"):
        assert float(chain.data.params[key]) == pytest.approx(float(best[key]))


def test_a_running_trial_counts_toward_the_total_and_a_failed_one_does_not(tmp_path, cli_store, tiny_base):
    from grader import Grader

    config = tiny_study(tmp_path, 2)
    other = optuna.create_study(study_name=config.name, storage=config.storage, direction="maximize")
    for _ in range(2):   # trials whose process died (e.g. its tracking server went away mid-read)
        other.tell(other.ask(), state=optuna.trial.TrialState.FAIL)
    other.ask()   # another process's trial, still running
    with Grader(workers=2) as grader:
        run_study(config, cli_store, grader, tiny_base, log=lambda m: None)
    states = sorted(t.state.name for t in optuna.load_study(study_name=config.name, storage=config.storage).trials)
    # One of ours, not none (the failed two do not count) and not two (the running one does).
    assert states == ["COMPLETE", "FAIL", "FAIL", "RUNNING"]


def test_storage_must_not_be_the_mlflow_store(tmp_path):
    with pytest.raises(UserError, match="is the MLflow tracking store"):
        check_storage(f"sqlite:///{tmp_path}/mlflow.db", f"sqlite:///{tmp_path}/../{tmp_path.name}/mlflow.db")
    check_storage(f"sqlite:///{tmp_path}/optuna.db", f"sqlite:///{tmp_path}/mlflow.db")


@pytest.mark.parametrize("options, message", [
    ({"controller": "pid"}, "'controller' must be one of"),
    ({"controller": "care", "condition": "es"}, "does not use the care controller"),
    ({"storage": "sqlite:///mlflow.db"}, "is the MLflow tracking store"),
    ({"seeds": "a,b"}, "comma-separated integers"),
])
def test_tune_bad_input(options, message, cli_store, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    result = cli("tune", *as_options(options))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert message in result.stderr


def test_storage_password_is_not_logged():
    from selfregress.tune import redacted

    assert redacted("postgresql://optuna:s3cret@db:5432/optuna") == "postgresql://optuna:***@db:5432/optuna"
    assert redacted("sqlite:///optuna.db") == "sqlite:///optuna.db"


def test_study_over_chain_params_and_a_search_of_two_dimensions(tmp_path, cli_store, tiny_base):
    """Fixed chain settings reach every chain; two searched dimensions stay in their ranges, reach
    the chains, and give a parallel-coordinates plot; the params file runs the tuned chain."""
    from grader import Grader

    config = parse(TuneConfig, {"condition": "es", "n_trials": 3, "seeds": "100",
                                "storage": f"sqlite:///{tmp_path}/optuna.db", "campaigns": 1, "steps": 2,
                                "eval_tasks": 4, "out": str(tmp_path / "best.json"),
                                "chain_params": "batch_size=2,group_size=2,max_new_tokens=24,eval_samples=1",
                                "search": "lr=1e-4:1e-3:log,es_slack=0:2"})
    with Grader(workers=2) as grader:
        best = run_study(config, cli_store, grader, tiny_base, log=lambda m: None)

    chains = cli_store.find_runs("tags.`selfregress.kind` = 'chain'")
    assert len(chains) == 3
    for chain in chains:
        params = chain.data.params
        assert (params["batch_size"], params["group_size"], params["max_new_tokens"], params["eval_samples"],
                params["steps"], params["eval_tasks"]) == ("2", "2", "24", "1", "2", "4")
        assert 1e-4 <= float(params["lr"]) <= 1e-3 and params["es_slack"] in {"0", "1", "2"}
        trial = cli_store.get_run(chain.data.tags["mlflow.parentRunId"])
        assert float(trial.data.params["lr"]) == float(params["lr"])
    study_run = cli_store.find_runs("tags.`selfregress.kind` = 'tune'")[0]
    assert study_run.data.tags["search_space"] == "lr=0.0001:0.001:log,es_slack=0:2"
    assert "lr=0.0001:0.001:log" in study_run.data.tags["mlflow.note.content"]
    artifacts = {f.path for f in cli_store.client.list_artifacts(study_run.info.run_id, "optuna")}
    assert "optuna/parallel_coordinate.png" in artifacts
    assert set(best) == {"condition", "batch_size", "group_size", "max_new_tokens", "eval_samples", "lr", "es_slack"}
    assert (best["condition"], best["batch_size"], best["group_size"]) == ("es", 2, 2)
    assert study_run.data.tags["best/lr"] == str(best["lr"])


@pytest.mark.parametrize("options, message", [
    ({"search": "bogus=1:2"}, "search: unknown chain parameter 'bogus'"),
    ({"chain_params": "bogus=1"}, "chain_params: unknown chain parameter 'bogus'"),
    ({"search": "checkpoints=0:1"}, "'checkpoints' is not numeric, so it takes choices"),
    ({"search": "lr=1e-3:1e-4:log"}, "needs low < high"),
    ({"chain_params": "batch_size=4", "search": "batch_size=2:8"}, "both fixed"),
])
def test_tune_refuses_a_bad_space_in_one_line(options, message, cli_store):
    result = cli("tune", *as_options(options))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [f"error: {result.stderr.strip()[7:]}"]
    assert message in result.stderr


def test_signature_objective_is_the_cross_fit_score_of_the_logged_halves(tmp_path, cli_store, tiny_base):
    """objective=signature: each trial's value is recomputed here from the campaigns' logged
    halves; 5 eval tasks give an even half of 3 tasks (0, 2, 4) and an odd one of 2."""
    from grader import Grader
    from selfregress import metric_keys as K
    from selfregress.signature import cross_fit, in_sd

    config = parse(TuneConfig, {"condition": "naive", "n_trials": 2, "seeds": "100,101",
                                "storage": f"sqlite:///{tmp_path}/optuna.db", "campaigns": 2, "steps": 2,
                                "eval_tasks": 5, "objective": "signature", "out": str(tmp_path / "best.json"),
                                "chain_params": "batch_size=2,group_size=2,max_new_tokens=24,eval_samples=2",
                                "search": "lr=1e-4:1e-3:log"})
    assert config.name != parse(TuneConfig, {**{k: getattr(config, k) for k in ("condition", "search",
                                                                               "chain_params")}}).name
    with Grader(workers=2) as grader:
        run_study(config, cli_store, grader, tiny_base, log=lambda m: None)

    study = optuna.load_study(study_name=config.name, storage=config.storage)
    for trial_run in cli_store.find_runs("tags.`selfregress.kind` = 'trial'"):
        pairs = []
        for chain in cli_store.find_runs(f"tags.mlflow.parentRunId = '{trial_run.info.run_id}'"):
            campaigns = 0
            for run in cli_store.campaign_runs(chain.data.tags["chain_id"], finished=True):
                history = {key: cli_store.metric_history(run.info.run_id, key) for key in
                           (K.EVAL_SUCCESSES, K.EVAL_TRIALS, K.EVAL_SUCCESSES_EVEN, K.EVAL_TRIALS_EVEN)}
                steps = sorted(history[K.EVAL_SUCCESSES])
                assert {history[K.EVAL_TRIALS][s] for s in steps} == {10.0}
                assert {history[K.EVAL_TRIALS_EVEN][s] for s in steps} == {6.0}
                even = [int(history[K.EVAL_SUCCESSES_EVEN][s]) for s in steps]
                odd = [int(history[K.EVAL_SUCCESSES][s]) - e for s, e in zip(steps, even)]
                pairs.append(in_sd(cross_fit(even, odd, 6, 4)))
                campaigns += 1
            assert campaigns == 2
        # The min of the means over every (seed, campaign), not the mean of per-campaign mins.
        value = study.trials[int(trial_run.data.tags["trial"])].value
        assert value == pytest.approx(min(sum(r for r, _ in pairs) / len(pairs), sum(f for _, f in pairs) / len(pairs)))
        assert trial_run.data.metrics["objective/mean_signature_score"] == pytest.approx(value)
        assert {"objective/campaign0_rise_sd", "objective/mean_rise_sd", "objective/mean_fall_sd"} <= \
            set(trial_run.data.metrics)
    study_run = cli_store.find_runs("tags.`selfregress.kind` = 'tune'")[0]
    assert "min(mean cross-fit rise, mean cross-fit fall)" in study_run.data.tags["mlflow.note.content"]


def test_a_process_that_joins_a_study_draws_other_parameters(tmp_path):
    """Two processes on one storage, both with sampler_seed 0: the second's first draw is not the
    first's (it was, before process_sampler: the same chains twice)."""
    from optuna.distributions import FloatDistribution

    from selfregress.tune import process_sampler

    storage, space = f"sqlite:///{tmp_path}/optuna.db", {"lr": FloatDistribution(1e-4, 1e-3, log=True)}
    first = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    first.sampler = process_sampler(0, first)
    drawn = first.ask(space).params["lr"]                   # still running when the second joins
    second = optuna.load_study(study_name="s", storage=storage)
    second.sampler = process_sampler(0, second)
    assert second.ask(space).params["lr"] != drawn
    again = optuna.create_study(study_name="t", storage=storage, direction="maximize")
    again.sampler = process_sampler(0, again)
    assert again.ask(space).params["lr"] == drawn           # a fresh study draws as before
