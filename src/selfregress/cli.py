"""``python -m selfregress <entry point> --key value ...``: thin CLIs over the library.

Each entry point of the MLproject calls one subcommand here; every parameter is a field of
that subcommand's frozen config dataclass, parsed once. A user error prints one line
(``error: ...``) and exits 2, with no traceback, after the run has been closed as FAILED.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from dataclasses import dataclass
from typing import Callable

from selfregress import metric_keys as K
from selfregress.bootstrap import BootstrapConfig
from selfregress.chain_config import ChainConfig
from selfregress.promote import PromoteConfig
from selfregress.report import ReportConfig
from selfregress.sweep import SweepConfig
from selfregress.tune import TuneConfig
from selfregress.config import add_arguments, as_params, from_args, option, require_at_least_one
from selfregress.errors import UserError


@dataclass(frozen=True)
class EvaluateConfig:
    """Held-out pass@1 of a model. Every field is an MLproject parameter of `evaluate`."""
    model: str = option("base", "'base' (the registry base), 'tiny' or 'small' (shipped bases), a folder, hub id or models:/ URI")
    tasks: str = option("synthetic", "task source: synthetic (its eval split), jsonl:PATH, apps:PATH, ...")
    split: str = option("eval", "split of the synthetic source", ("pretrain", "rl", "eval", "test"))
    eval_tasks: int = option(256, "number of tasks evaluated (the first N of the source)")
    eval_samples: int = option(4, "samples per task")
    temperature: float = option(1.0, "sampling temperature (0: greedy decoding, with eval_samples 1)")
    top_p: float = option(1.0, "nucleus sampling threshold")
    max_new_tokens: int = option(96, "token limit of a sampled program")
    seed: int = option(0, "sampling seed")
    workers: int = option(2, "grader processes")

    def validate(self) -> None:
        require_at_least_one(self, ("eval_tasks", "eval_samples", "max_new_tokens", "workers"))
        if self.temperature < 0 or self.temperature == 0 and self.eval_samples != 1:
            raise UserError(f"'temperature' must be > 0, or 0 (greedy) with eval_samples 1, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise UserError(f"'top_p' must be in (0, 1], got {self.top_p}")
        if self.seed < 0:
            raise UserError(f"'seed' must be >= 0, got {self.seed}")


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _set_threads(args: argparse.Namespace) -> None:
    """torch's threads, set by a command that trains or samples (the others never import torch).
    0 (auto): ``OMP_NUM_THREADS`` if set, else this process's cores, at most 4 (``sweep`` gives
    each chain its share). On 2 cores a default step took 2.1 s on 2 threads, 2.7-2.9 s on 1,
    with the same results (benchmarks/chain.py --threads; tests/chain/test_behaviour_unchanged.py)."""
    import torch

    torch.set_num_threads(args.threads or default_threads())


def default_threads() -> int:
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    return max(1, min(4, len(os.sched_getaffinity(0))))


def _entry_run_id() -> str | None:
    """The run that `mlflow run` created for this entry point, to attach to."""
    return os.environ.get("MLFLOW_RUN_ID")


def cmd_bootstrap(args: argparse.Namespace) -> None:
    config = from_args(BootstrapConfig, args)
    _set_threads(args)
    from grader import Grader
    from selfregress.bootstrap import bootstrap
    from selfregress.tracking import connect

    store = connect(args.experiment, _entry_run_id())
    with Grader(workers=2) as grader:
        uri = bootstrap(config, store, grader, _log, attach_run_id=_entry_run_id())
    print(uri)
    _log(f"runs: {store.ui_link()}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    config = from_args(EvaluateConfig, args)
    _set_threads(args)
    from grader import Grader
    from selfregress.bootstrap import start_model
    from selfregress.evaluation import evaluate
    from selfregress.policy import load_policy
    from selfregress.tasks import resolve_tasks
    from selfregress.tracking import connect

    tasks = resolve_tasks(config.tasks, config.split, config.eval_tasks)
    store = connect(args.experiment, _entry_run_id())
    with Grader(workers=config.workers) as grader:
        model = start_model(store, config.model, _log)
        policy = load_policy(model)
        with store.run("evaluate", "evaluate", params=as_params(config), tags={K.MODEL: model},
                       attach_run_id=_entry_run_id()) as run:
            result = evaluate(policy, tasks, grader, samples=config.eval_samples,
                              temperature=config.temperature, top_p=config.top_p,
                              max_new_tokens=config.max_new_tokens, seed=config.seed)
            run.log_metrics(result.metrics(), step=0)
            result.log_samples(run, tasks)
    for key, value in result.metrics().items():
        print(f"{key}: {value:.4f}" if isinstance(value, float) and key.startswith("pass") else f"{key}: {value:g}")
    where = f"{config.split}[:{len(tasks)}]" if config.tasks == "synthetic" else f"its first {len(tasks)} tasks"
    how = "greedy" if config.temperature == 0 else f"T = {config.temperature:g}"
    _log(f"evaluated on {config.tasks} {where}, {config.eval_samples} samples each at {how} ({len(tasks) * config.eval_samples} "
         f"trials, seed {config.seed}): other splits or sizes give other figures for the same model")
    _log(f"runs: {store.ui_link()}")


def cmd_main(args: argparse.Namespace) -> None:
    config = from_args(ChainConfig, args, params_file=args.params_file or None)
    _set_threads(args)
    from selfregress.chain import run_chain
    from grader import Grader
    from selfregress.bootstrap import start_model
    from selfregress.tracking import connect

    from selfregress import distributed
    from selfregress.tracking import Run

    dist = distributed.current()   # several processes under `accelerate launch`; only rank 0 uses MLflow
    store = connect(args.experiment, _entry_run_id()) if dist.is_main else None
    parent = Run(store, args.parent_run_id) if args.parent_run_id and store else None
    with Grader(workers=config.workers) as grader:
        base = dist.broadcast(start_model(store, config.model, _log) if dist.is_main else config.model)
        chain_id = run_chain(config, store, grader, base, _log, attach_run_id=_entry_run_id(),
                             parent=parent, sweep_id=args.sweep_id, dist=dist)
    if dist.is_main:
        print(f"chain_id: {chain_id}")
        _log(f"runs: {store.ui_link()}")


def cmd_sweep(args: argparse.Namespace) -> None:
    from selfregress.sweep import SweepConfig, plan_jobs, run_sweep

    config = from_args(SweepConfig, args)
    _set_threads(args)
    jobs = plan_jobs(config)  # every chain's settings are checked before anything starts
    from selfregress.base_identity import pin
    from selfregress.bootstrap import start_model
    from selfregress.tracking import connect

    store = connect(args.experiment, _entry_run_id())
    # registered once here, not by every chain process at the same time; the chains' own model
    # (the params file's, where the option is left at its default), which they all share
    base = start_model(store, jobs[0].config.model, _log)
    counts = run_sweep(config, store, _log, attach_run_id=_entry_run_id(), base_digest=pin(store, base).digest)
    print(f"sweep_id: {counts['sweep_id']}")
    _log(f"sweep {counts['sweep_id']}: {counts['finished']} finished, {counts['skipped']} skipped "
         f"(already in the store); report: python -m selfregress report --sweep_id {counts['sweep_id']}")
    _log(f"runs: {store.ui_link()}")


def cmd_report(args: argparse.Namespace) -> None:
    from selfregress.report import ReportConfig, run_report
    from selfregress.tracking import connect

    config = from_args(ReportConfig, args)
    store = connect(args.experiment, _entry_run_id())
    with contextlib.ExitStack() as stack:
        graders = []

        def open_grader():
            """Only the audit, or chains that lack report-split figures, sample: torch comes in then."""
            if not graders:
                _set_threads(args)
                from grader import Grader

                graders.append(stack.enter_context(Grader(workers=2)))
            return graders[0]

        text = run_report(config, store, open_grader, _log, attach_run_id=_entry_run_id())
    print(text)
    _log(f"report, table.csv and plots written to {config.out}/ and logged on a report run")
    _log(f"runs: {store.ui_link()}")


def cmd_promote(args: argparse.Namespace) -> None:
    from selfregress.promote import PromoteConfig, promote
    from selfregress.tracking import connect

    config = from_args(PromoteConfig, args)
    _set_threads(args)
    from grader import Grader

    store = connect(args.experiment, _entry_run_id())
    # stdout carries only the JSON record: MLflow's own registry chatter goes to stderr.
    with Grader(workers=2) as grader, contextlib.redirect_stdout(sys.stderr):
        record = promote(config, store, grader, _log, attach_run_id=_entry_run_id())
    print(json.dumps(record, indent=2))
    _log(f"registered {config.name} version {record['version']} as {record['uri']}")


def cmd_tune(args: argparse.Namespace) -> None:
    from selfregress.tune import TuneConfig, check_storage, run_study

    config = from_args(TuneConfig, args)
    _set_threads(args)
    from grader import Grader
    from selfregress.bootstrap import start_model
    from selfregress.tracking import connect, tracking_uri

    check_storage(config.storage, tracking_uri())
    store = connect(args.experiment, _entry_run_id())
    with Grader(workers=2) as grader:
        base = start_model(store, config.model, _log)
        best = run_study(config, store, grader, base, _log, attach_run_id=_entry_run_id())
    print(json.dumps(best))
    _log(f"best parameters written to {config.out} (use: -P params_file={config.out})")
    _log(f"runs: {store.ui_link()}")


COMMANDS: dict[str, tuple[Callable, type, str]] = {
    "main": (cmd_main, ChainConfig, "one chain of campaigns (the paper's protocol)"),
    "tune": (cmd_tune, TuneConfig, "Optuna study over the ES or CARE thresholds"),
    "sweep": (cmd_sweep, SweepConfig, "every condition x seed, chains in parallel processes"),
    "report": (cmd_report, ReportConfig, "the paper's table, plots and stability audit from MLflow"),
    "promote": (cmd_promote, PromoteConfig, "best checkpoint, re-evaluated on the test split, to the registry"),
    "bootstrap": (cmd_bootstrap, BootstrapConfig, "rebuild a base model (the default one ships in src/selfregress/base) and register it as selfregress-base@base"),
    "evaluate": (cmd_evaluate, EvaluateConfig, "held-out pass@1 (and pass@k) of a model"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="selfregress", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (_, cls, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--experiment", default="selfregress", help="MLflow experiment name")
        p.add_argument("--threads", type=int, default=0,
                       help="torch threads (0: OMP_NUM_THREADS, else this machine's cores, at most 4)")
        if name == "main":
            p.add_argument("--params_file", "--params-file", default="",
                           help="JSON of parameters (e.g. written by `tune`); explicit options win")
            p.add_argument("--sweep_id", default="", help=argparse.SUPPRESS)       # set by `sweep`
            p.add_argument("--parent_run_id", default="", help=argparse.SUPPRESS)  # set by `sweep`
        add_arguments(p, cls)
    return parser


def _record_refusal(command: str, message: str) -> None:
    """Under `mlflow run`, leave the error on its run (tag, description, FAILED, a readable name);
    a plain CLI call has no run, and never imports mlflow to refuse."""
    run_id = _entry_run_id()
    if not run_id:
        return
    try:
        from selfregress.tracking import record_refusal

        record_refusal(run_id, command, message)
    except Exception as e:  # the store is unreachable, say: the error above is still the story
        print(f"warning: could not record the error on run {run_id} ({type(e).__name__}: {e})", file=sys.stderr)


def user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions whose message is for the user: printed as one line, exit code 2. The policy's and
    the task sources' errors (PolicyError, TaskError) are UserErrors too."""
    return (UserError,)


def parse_argv(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse a command line, as typed or as MLflow's Docker/Kubernetes backends pass it."""
    from grader.cli import unquote_mlflow_argv

    return build_parser().parse_args(unquote_mlflow_argv(sys.argv[1:] if argv is None else argv))


def main(argv: list[str] | None = None) -> int:
    args = parse_argv(argv)
    from selfregress.interrupts import Terminated, install_sigterm_handler

    install_sigterm_handler()
    try:
        COMMANDS[args.command][0](args)
    except user_errors() as e:
        print(f"error: {e}", file=sys.stderr)
        _record_refusal(args.command, str(e))
        return 2
    except (KeyboardInterrupt, Terminated):
        print("interrupted: the run was closed as KILLED; everything logged so far is kept",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
