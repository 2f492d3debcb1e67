"""MLflow, the system of record. The only module that imports mlflow.

Everything else hands this module plain ``dict[str, float]`` metrics and local folders.
Runs are driven through ``MlflowClient`` with explicit run ids rather than the fluent
"active run" state, so that a bootstrap started from inside another entry point gets a
run of its own, and so that a chain and its campaign runs can be written side by side.

Reads: the tracking store named by ``MLFLOW_TRACKING_URI`` (default ``sqlite:///mlflow.db``).
Writes: runs, metrics, LoggedModel checkpoints, registered model versions and aliases.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping

import mlflow
from mlflow import MlflowClient
from mlflow.entities import LoggedModelOutput, Metric, Param, RunTag
from mlflow.exceptions import MlflowException

from selfregress import metric_keys as K
from selfregress.errors import UserError
from selfregress.interrupts import ShieldedClient, store_call
from selfregress.interrupts import Terminated, install_sigterm_handler  # noqa: F401 - the CLI's and tests' door

DEFAULT_URI = "sqlite:///mlflow.db"
DEFAULT_EXPERIMENT = "selfregress"
BASE_MODEL_NAME = "selfregress-base"
BASE_ALIAS = "base"
KIND_TAG = K.KIND

# MLflow caps a log_batch call at 1000 metrics / 100 params / 100 tags.
_MAX_METRICS, _MAX_PARAMS = 1000, 100


def tracking_uri() -> str:
    """MLflow's own convention: MLFLOW_TRACKING_URI (set by `mlflow run` too), else sqlite."""
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def connect(experiment: str = DEFAULT_EXPERIMENT, attach_run_id: str | None = None) -> "Store":
    """Open the tracking store and the experiment, creating both if needed.

    Under `mlflow run`, the entry point's run already exists (``attach_run_id``) in the
    experiment `mlflow run` was given (Default unless --experiment-name): every run of this
    invocation then goes there too, so that nested runs sit under their parent.
    """
    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    client = ShieldedClient(MlflowClient(uri, registry_uri=uri))
    try:
        if attach_run_id:
            experiment_id = client.get_run(attach_run_id).info.experiment_id
        else:
            exp = client.get_experiment_by_name(experiment)
            experiment_id = exp.experiment_id if exp else client.create_experiment(experiment)
        mark_model_training(client, experiment_id)
    except MlflowException as e:
        raise UserError(f"cannot reach the MLflow tracking store at {uri}: {_first_line(e)}. "
                        "Start the server or set MLFLOW_TRACKING_URI to a reachable store.") from None
    except Exception as e:  # connection errors surface as requests/urllib3 exceptions
        raise UserError(f"cannot reach the MLflow tracking store at {uri}: {_first_line(e)}. "
                        "Start the server or set MLFLOW_TRACKING_URI to a reachable store.") from None
    return Store(client=client, uri=uri, experiment_id=experiment_id)


def mark_model_training(client, experiment_id: str) -> None:
    """Tag the experiment as model training, so that MLflow 3's UI opens it on the runs table and
    charts, not on GenAI traces and evaluations (an untagged experiment, like the ``Default`` one
    that `mlflow run` uses, may be inferred as GenAI)."""
    exp = client.get_experiment(experiment_id)
    if exp.tags.get(K.EXPERIMENT_KIND) != K.MODEL_TRAINING:
        client.set_experiment_tag(experiment_id, K.EXPERIMENT_KIND, K.MODEL_TRAINING)


def record_refusal(run_id: str, command: str, message: str) -> None:
    """A run that `mlflow run` created and the CLI refused: the one-line error as a tag and as its
    description, a readable name (if no entry point named it yet), and the status FAILED."""
    uri = tracking_uri()
    client = MlflowClient(uri, registry_uri=uri)
    run = client.get_run(run_id)
    mark_model_training(client, run.info.experiment_id)
    client.set_tag(run_id, K.ERROR, message[:5000])
    client.set_tag(run_id, K.NOTE, f"**Refused.** `{command}` did not start: {message}")
    if K.KIND not in run.data.tags:
        client.set_tag(run_id, K.KIND, f"{command}-refused")
        client.update_run(run_id, name=f"{command}-refused")
    client.set_terminated(run_id, status="FAILED")


def _tag(key: str, value: object) -> str:
    """An MLflow filter clause on a tag (keys with dots are backquoted)."""
    return f"tags.`{key}` = '{value}'" if "." in key else f"tags.{key} = '{value}'"


def _kind(kind: str) -> str:
    return _tag(K.KIND, kind)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__


@dataclass
class Store:
    client: "MlflowClient | ShieldedClient"
    uri: str
    experiment_id: str

    def ui_link(self, base: str = "http://127.0.0.1:5000") -> str:
        """The runs table and charts (the 3.17 UI opens an experiment on its GenAI page otherwise)."""
        if self.uri.startswith("http"):
            base = self.uri.rstrip("/")
        return f"{base}/#/experiments/{self.experiment_id}/runs?workflowType=machine_learning"

    def run_link(self, run_id: str, base: str = "http://127.0.0.1:5000") -> str:
        """One run's page in the UI, in model-training mode (3.17 opens a run link without it as GenAI)."""
        experiment, query = self.ui_link(base).split("/runs?")
        return f"{experiment}/runs/{run_id}?{query}"

    @contextlib.contextmanager
    def run(self, name: str, kind: str, *, tags: Mapping[str, str] | None = None,
            params: Mapping[str, object] | None = None, parent: "Run | None" = None,
            attach_run_id: str | None = None) -> Iterator["Run"]:
        """Start (or attach to) a run; end it FINISHED, FAILED or KILLED, never left RUNNING.

        ``attach_run_id`` is the run that ``mlflow run`` created (its MLFLOW_RUN_ID).
        """
        all_tags = {KIND_TAG: kind, **{k: str(v) for k, v in (tags or {}).items()}}
        if parent is not None:
            all_tags["mlflow.parentRunId"] = parent.run_id
        if attach_run_id:
            run_id = attach_run_id
            self.client.update_run(run_id, status="RUNNING", name=name or None)
        else:
            run_id = self.client.create_run(self.experiment_id, run_name=name,
                                            tags={"mlflow.runName": name, **all_tags}).info.run_id
        run = Run(self, run_id)
        if attach_run_id:
            run.set_tags(all_tags)
            # `mlflow run` already logged the MLproject parameters, in the user's spelling
            # ("1e-5" vs "1e-05"); MLflow refuses to change a logged param, so skip those keys.
            logged = self.client.get_run(run_id).data.params
            params = {k: v for k, v in (params or {}).items() if k not in logged}
        if params:
            run.log_params(params)
        try:
            yield run
        except (KeyboardInterrupt, Terminated):
            self._end(run_id, "KILLED")
            raise
        except BaseException:
            self._end(run_id, "FAILED")
            raise
        self._end(run_id, "FINISHED")

    def _end(self, run_id: str, status: str) -> None:
        # Never let a failure to close the run hide the original error, but say so.
        try:
            self.client.set_terminated(run_id, status=status)
        except Exception as e:
            print(f"warning: could not close run {run_id} as {status} ({_first_line(e)}); "
                  "it shows as RUNNING until closed by hand", file=sys.stderr)

    # ---- reading back: controllers and resume rebuild their state from here ---------------
    def find_runs(self, filter_string: str, order_by: list[str] | None = None) -> list:
        """Every matching run of the experiment (all pages), newest first by default."""
        runs, token = [], None
        while True:
            page = self.client.search_runs([self.experiment_id], filter_string=filter_string,
                                           order_by=order_by or ["attributes.start_time DESC"],
                                           max_results=1000, page_token=token)
            runs.extend(page)
            token = page.token
            if not token:
                return runs

    def runs_frame(self, filter_string: str):
        """The matching runs as a pandas DataFrame (``mlflow.search_runs``: params.*, tags.*, metrics.*)."""
        with store_call():
            return mlflow.search_runs([self.experiment_id], filter_string=filter_string,
                                      order_by=["attributes.start_time DESC"], output_format="pandas")

    # ---- the project's queries: the only MLflow filter strings in the project -----------------
    def finished_chains(self, sweep_id: str = "", extra: str = "", frame: bool = False):
        """FINISHED chain runs, newest first: of one sweep, and matching a user's own MLflow
        filter (``extra``, passed through); a DataFrame with ``frame``."""
        clauses = [_kind("chain"), "attributes.status = 'FINISHED'"]
        clauses += [_tag(K.SWEEP_ID, sweep_id)] if sweep_id else []
        clauses += [extra] if extra else []
        try:
            return (self.runs_frame if frame else self.find_runs)(" and ".join(clauses))
        except Exception as e:  # a malformed user filter: MlflowException, or a REST error
            raise UserError(f"MLflow refused the run filter ({_first_line(e)}): check "
                            f"sweep_id={sweep_id!r} and filter={extra!r}") from None

    def chain_run(self, chain_id: str) -> list:
        """The chain run with this id (a list: empty if there is none)."""
        return self.find_runs(f"{_kind('chain')} and {_tag(K.CHAIN_ID, chain_id)}")

    def unfinished_chains(self, condition: str, seed: int) -> list:
        """Chain runs of this condition and seed that did not finish, newest first."""
        return self.find_runs(f"{_kind('chain')} and {_tag(K.CONDITION, condition)} and "
                              f"{_tag(K.SEED, seed)} and attributes.status != 'FINISHED'")

    def chains_like(self, config_hash: str, code_version: str, finished: bool) -> list:
        """Chain runs with these settings and this code, FINISHED or not, newest first."""
        return self.find_runs(f"{_kind('chain')} and attributes.status {'=' if finished else '!='} 'FINISHED' "
                              f"and {_tag(K.CONFIG_HASH, config_hash)} and {_tag(K.CODE_VERSION, code_version)}")

    def campaign_runs(self, chain_id: str, finished: bool) -> list:
        """A chain's campaign runs: the FINISHED ones, or every other one."""
        return self.find_runs(f"{_kind('campaign')} and {_tag(K.CHAIN_ID, chain_id)} "
                              f"and attributes.status {'=' if finished else '!='} 'FINISHED'")

    def study_runs(self, study_name: str) -> list:
        """The tune run of an Optuna study (a list: empty before its first invocation)."""
        return self.find_runs(f"{_kind('tune')} and {_tag(K.STUDY_NAME, study_name)}")

    def get_run(self, run_id: str):
        return self.client.get_run(run_id)

    def metric_history(self, run_id: str, key: str) -> dict[int, float]:
        """step -> value (the last value logged at a step wins)."""
        return {m.step: m.value for m in sorted(self.client.get_metric_history(run_id, key),
                                                key=lambda m: (m.step, m.timestamp))}

    def checkpoints(self, run_id: str) -> dict[int, str]:
        """step -> LoggedModel id, from the run's model outputs."""
        outputs = self.client.get_run(run_id).outputs
        return {o.step: o.model_id for o in (outputs.model_outputs if outputs else [])}

    def model_id(self, uri: str) -> str | None:
        """The LoggedModel id behind ``models:/<id>`` or ``models:/name@alias``; None for paths."""
        if not uri.startswith("models:/"):
            return None
        ref = uri[len("models:/"):]
        if "@" in ref:
            version = self.client.get_model_version_by_alias(*ref.split("@", 1))
        elif "/" in ref:
            version = self.client.get_model_version(*ref.split("/", 1))
        else:
            return ref
        # A version made from a LoggedModel has source models:/<id> (model_id may be unset).
        return version.model_id or version.source[len("models:/"):]

    def link_checkpoint(self, run_id: str, model_id: str, step: int) -> None:
        """Link an existing LoggedModel to a step of a run, without uploading it again."""
        self.client.log_outputs(run_id, [LoggedModelOutput(model_id, step)])

    def delete_weights(self, model_id: str) -> None:
        """Delete a LoggedModel's files from its artifact store (a local folder, or a server's proxied
        ``mlflow-artifacts:``), then tag it ``selfregress.pruned``; its metrics and run links stay.
        Deleting files that are gone already does nothing, so a retry is safe."""
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        location = self.client.get_logged_model(model_id).artifact_location
        with store_call():
            get_artifact_repository(location).delete_artifacts()
        self.client.set_logged_model_tags(model_id, {K.PRUNED: "true"})

    def reopen(self, run_id: str) -> "Run":
        self.client.update_run(run_id, status="RUNNING")
        return Run(self, run_id)

    def close(self, run_id: str, status: str) -> None:
        self._end(run_id, status)

    # ---- registry -------------------------------------------------------------------------
    def registered_uri(self, name: str, alias: str) -> str | None:
        """``models:/name@alias`` if that alias exists, else None."""
        try:
            self.client.get_model_version_by_alias(name, alias)
        except MlflowException:
            return None
        return f"models:/{name}@{alias}"

    def register(self, model_id: str, name: str, alias: str,
                 tags: Mapping[str, object] | None = None) -> str:
        """Register a LoggedModel as a new version of ``name`` and point ``alias`` at it."""
        with contextlib.suppress(MlflowException):
            self.client.create_registered_model(name)
        version = self.client.create_model_version(
            name, source=f"models:/{model_id}", model_id=model_id,
            tags={k: str(v) for k, v in (tags or {}).items()})
        self.client.set_registered_model_alias(name, alias, version.version)
        return str(version.version)


@dataclass
class Run:
    store: Store
    run_id: str

    @property
    def client(self) -> MlflowClient:
        return self.store.client

    def log_params(self, params: Mapping[str, object]) -> None:
        items = [Param(k, str(v)) for k, v in params.items()]
        for i in range(0, len(items), _MAX_PARAMS):
            self.client.log_batch(self.run_id, params=items[i:i + _MAX_PARAMS])

    def set_tags(self, tags: Mapping[str, object]) -> None:
        items = [RunTag(k, str(v)) for k, v in tags.items()]
        for i in range(0, len(items), _MAX_PARAMS):
            self.client.log_batch(self.run_id, tags=items[i:i + _MAX_PARAMS])

    def log_metrics(self, metrics: Mapping[str, float], step: int, model_id: str | None = None) -> None:
        """One round trip for all of a step's metrics."""
        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step, model_id=model_id) for k, v in metrics.items()]
        for i in range(0, len(items), _MAX_METRICS):
            self.client.log_batch(self.run_id, metrics=items[i:i + _MAX_METRICS])

    def log_series(self, key: str, values: Mapping[int, float] | list[float], start_step: int = 0) -> None:
        """A whole curve (a list from ``start_step``, or step -> value) in as few round trips as possible."""
        now = int(time.time() * 1000)
        points = values.items() if isinstance(values, Mapping) else enumerate(values, start=start_step)
        items = [Metric(key, float(v), now, step) for step, v in points]
        for i in range(0, len(items), _MAX_METRICS):
            self.client.log_batch(self.run_id, metrics=items[i:i + _MAX_METRICS])

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_checkpoint(self, folder: str | Path, name: str, step: int,
                       tags: Mapping[str, object] | None = None) -> str:
        """Log a ``save_pretrained`` folder as an MLflow 3 LoggedModel linked to ``step``.

        ``mlflow.transformers.log_model`` is broken with transformers 5.x, and a raw folder
        is all that ``load_policy`` needs. Returns the model id (``models:/<id>`` loads it).
        """
        model = self.client.create_logged_model(
            experiment_id=self.store.experiment_id, name=name, source_run_id=self.run_id,
            tags={k: str(v) for k, v in (tags or {}).items()}, model_type="hf-causal-lm")
        self.client.log_model_artifacts(model.model_id, str(folder))
        self.client.finalize_logged_model(model.model_id, "READY")
        self.store.link_checkpoint(self.run_id, model.model_id, step)
        return model.model_id


def download_model(uri: str) -> str:
    """A local folder holding the model behind a ``models:/...`` URI (id, name/version or @alias)."""
    mlflow.set_tracking_uri(tracking_uri())
    try:
        return mlflow.artifacts.download_artifacts(artifact_uri=uri)
    except MlflowException as e:
        raise UserError(f"cannot load {uri} from the MLflow store {tracking_uri()}: {_first_line(e)}") from None
