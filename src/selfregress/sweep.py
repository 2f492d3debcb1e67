"""A sweep: every condition x seed, each chain its own `main` process and its own chain run.

Reads: the tracking store (which chains already finished). Writes: a sweep run
(``selfregress.kind=sweep``) with the chain runs nested under it, each tagged ``sweep_id``.

Runs are the cache. A chain that already FINISHED in the experiment with the same resolved
configuration (``selfregress.config_hash``) and code version (``selfregress.code_version``) is
skipped, and one that was killed mid-way is resumed (its finished campaigns are kept), so an
interrupted sweep continues where it stopped when the same command runs again.
The default ``sweep_id`` is itself a hash of the shared settings and the code version: the
same command names the same sweep, and a sweep of a few conditions fills in part of a bigger one.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from selfregress import metric_keys as K
from selfregress.chain_config import ChainConfig, code_version, config_hash
from selfregress.conditions import CONDITIONS
from selfregress.config import (as_params, int_list, option, parse, read_params_file, require_at_least_one,
                                split_list)
from selfregress.errors import UserError
from selfregress.records import split_digests

# The chain settings a sweep passes on (the rest: a params file, e.g. one written by `tune`).
SHARED = ("model", "tasks", "campaigns", "steps", "batch_size", "group_size", "lr", "max_new_tokens",
          "eval_tasks", "eval_samples", "checkpoints", "report_tasks", "report_samples")


@dataclass(frozen=True)
class SweepConfig:
    """Conditions x seeds. Every field is an MLproject parameter of `sweep`."""
    conditions: str = option(",".join(CONDITIONS), "comma-separated conditions")
    seeds: str = option("0,1,2,3,4", "comma-separated chain seeds (the evaluation seeds)")
    workers: int = option(2, "chains run at once, each in its own process")
    sweep_id: str = option("", "default: a hash of the shared settings and the code version")
    params_file: str = option("", "JSON of chain parameters shared by every chain (e.g. from `tune`)")
    model: str = option("base", "start model of every chain")
    tasks: str = option("synthetic", "RL/eval task source")
    campaigns: int = option(10, "campaigns per chain")
    steps: int = option(20, "steps per campaign")
    batch_size: int = option(16, "prompts per step")
    group_size: int = option(4, "samples per prompt")
    lr: float = option(ChainConfig.lr, "AdamW learning rate")
    max_new_tokens: int = option(96, "token limit of a sampled program")
    eval_tasks: int = option(128, "held-out tasks evaluated after every step")
    eval_samples: int = option(2, "samples per held-out task")
    checkpoints: str = option("all", "which steps log a checkpoint", ("all", "peaks", "none"))
    report_tasks: int = option(ChainConfig.report_tasks, "report-split tasks (no decision reads them)")
    report_samples: int = option(ChainConfig.report_samples, "samples per report-split task")

    def validate(self) -> None:
        require_at_least_one(self, ("workers",))
        unknown = [c for c in self.condition_list if c not in CONDITIONS]
        if unknown or not self.condition_list:
            raise UserError(f"'conditions' must list some of {', '.join(CONDITIONS)}, got {self.conditions!r}")
        if not self.seed_list:
            raise UserError("'seeds' must list at least one seed, e.g. 0,1,2,3,4")

    @property
    def condition_list(self) -> list[str]:
        return split_list(self.conditions)

    @property
    def seed_list(self) -> list[int]:
        return int_list(self.seeds, "seeds")


@dataclass(frozen=True)
class Job:
    condition: str
    seed: int
    config: ChainConfig
    options: dict[str, str]     # what the `main` process is given


def plan_jobs(config: SweepConfig) -> list[Job]:
    """Every chain of the sweep, resolved and validated before anything runs."""
    shared = dict(read_params_file(config.params_file)) if config.params_file else {}
    defaults = SweepConfig()
    for key in SHARED:  # as in `main`: an option beats the file only when it is not the default
        if key not in shared or getattr(config, key) != getattr(defaults, key):
            shared[key] = getattr(config, key)
    for key in ("condition", "seed", "resume"):
        shared.pop(key, None)
    jobs = []
    for seed in config.seed_list:      # seed-major: a sweep cut short still has matched pairs
        for condition in config.condition_list:
            options = {**{k: str(v) for k, v in shared.items()}, "condition": condition, "seed": str(seed)}
            jobs.append(Job(condition, seed, parse(ChainConfig, options), options))
    return jobs


def sweep_params(config: SweepConfig, jobs: list[Job]) -> dict:
    """The sweep run's params: its own options, then what every chain was given (a params file's
    values where the option was left at its default), so the UI shows the lr the chains ran at."""
    shared = {k: v for k, v in jobs[0].options.items() if k not in ("condition", "seed")}
    return {**{k: v for k, v in as_params(config).items() if k != "sweep_id"}, **shared}


def default_sweep_id(jobs: list[Job]) -> str:
    shared = sorted({config_hash(j.config, without=("condition", "seed")) for j in jobs})
    return hashlib.sha256(f"{shared}{code_version()}".encode()).hexdigest()[:10]


def same_chains(store, job: Job, finished: bool, base_digest: str = "") -> list:
    """Chain runs with this job's configuration, base weights (their sha256) and the current code,
    FINISHED or not, newest first."""
    return store.chains_like(config_hash(job.config, base_digest=base_digest, splits=split_digests(job.config)),
                             code_version(), finished)


def finished_chain(store, job: Job, base_digest: str = "") -> str | None:
    """The run id of a FINISHED chain with this job's configuration and the current code, if any."""
    runs = same_chains(store, job, finished=True, base_digest=base_digest)
    return runs[0].info.run_id if runs else None


def chain_to_resume(store, job: Job, base_digest: str = "") -> str | None:
    """The chain_id of the newest unfinished chain of this job (killed mid-sweep), if any: the
    sweep resumes it, so its finished campaigns are not run again."""
    runs = same_chains(store, job, finished=False, base_digest=base_digest)
    return runs[0].data.tags[K.CHAIN_ID] if runs else None


def run_sweep(config: SweepConfig, store, log=print, attach_run_id: str | None = None,
              base_digest: str = "") -> dict[str, int]:
    """Run every chain not already in the store; return counts of finished, skipped and failed.

    ``base_digest``: the sha256 of the base's weights (``base_identity.pin``), which the chains
    put in their config hash: a chain on other weights under the same alias is not reused.
    """
    jobs = plan_jobs(config)
    sweep_id = config.sweep_id or default_sweep_id(jobs)
    todo = [j for j in jobs if finished_chain(store, j, base_digest) is None]
    log(f"sweep {sweep_id}: {len(jobs)} chains, {len(jobs) - len(todo)} already finished, "
        f"{len(todo)} to run on {config.workers} workers")
    # Each chain process gets one torch thread and an equal share of the cores for its grader.
    grader_workers = max(1, (os.cpu_count() or 2) // config.workers)
    experiment = store.client.get_experiment(store.experiment_id).name
    counts = {"finished": 0, "skipped": len(jobs) - len(todo), "failed": 0}
    lock = threading.Lock()
    started = time.perf_counter()
    with store.run(f"sweep-{sweep_id}", "sweep", tags={K.SWEEP_ID: sweep_id},
                   params=sweep_params(config, jobs),
                   attach_run_id=attach_run_id) as sweep_run:

        def run_one(job: Job) -> None:
            resume = chain_to_resume(store, job, base_digest)
            if resume:
                log(f"sweep {sweep_id}: {job.condition} seed {job.seed}: resuming chain {resume}")
            code = run_chain_process(job, sweep_id, sweep_run.run_id, experiment, grader_workers, log, resume)
            why = "" if code == 0 else close_dead_chain(store, job, code, base_digest)
            with lock:
                counts["finished" if code == 0 else "failed"] += 1
                done = counts["finished"] + counts["failed"]
                log(f"sweep {sweep_id}: {job.condition} seed {job.seed} "
                    f"{'finished' if code == 0 else f'FAILED (exit {code}{why})'} ({done}/{len(todo)})")

        with ThreadPoolExecutor(max_workers=config.workers) as pool:
            list(pool.map(run_one, todo))
        sweep_run.log_metrics({"sweep/chains_finished": counts["finished"], "sweep/chains_skipped": counts["skipped"],
                               "sweep/chains_failed": counts["failed"],
                               "sweep/wall_seconds": time.perf_counter() - started}, step=0)
        if counts["failed"]:
            raise UserError(f"sweep {sweep_id}: {counts['failed']} chain(s) failed (their lines above say why); "
                            "run the same command again to retry them: finished chains are skipped")
    return {"sweep_id": sweep_id, **counts}


def close_dead_chain(store, job: Job, code: int, base_digest: str = "") -> str:
    """A chain process that died without closing its runs (a signal: SIGKILL from the kernel's OOM
    killer leaves no chance to) would leave its chain and campaign runs RUNNING forever: close
    them as KILLED, with the reason as ``selfregress.error``. They stay resumable (the sweep's
    next invocation resumes unfinished chains). Returns the reason, for the sweep's log line."""
    why = "" if code >= 0 else f", killed by signal {-code}" + (
        ": SIGKILL, the kernel's OOM killer if memory ran out (dmesg says)" if code == -9 else "")
    for chain in same_chains(store, job, finished=False, base_digest=base_digest):
        runs = [chain, *store.campaign_runs(chain.data.tags.get(K.CHAIN_ID, ""), finished=False)]
        for run in runs:
            if run.info.status == "RUNNING":
                store.client.set_tag(run.info.run_id, K.ERROR, f"the chain process exited with {code}{why}")
                store.close(run.info.run_id, "KILLED")
    return why


def run_chain_process(job: Job, sweep_id: str, parent_run_id: str, experiment: str, grader_workers: int,
                      log, resume: str | None = None) -> int:
    """One chain as its own `python -m selfregress main` process; its lines are prefixed and relayed."""
    # Each chain gets its share of the cores for torch, as it does for its grader.
    options = {**job.options, "workers": str(grader_workers), "threads": str(grader_workers),
               **({"resume": resume} if resume else {})}
    command = [sys.executable, "-m", "selfregress", "main", "--experiment", experiment,
               "--sweep_id", sweep_id, "--parent_run_id", parent_run_id,
               *[item for k, v in options.items() for item in (f"--{k}", v)]]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_RUN_ID"}  # never attach to the sweep's run
    prefix = f"[{job.condition} s{job.seed}]"
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env) as proc:
        for line in proc.stdout:
            log(f"{prefix} {line.rstrip()}")
    return proc.returncode
