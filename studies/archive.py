"""Pack a sweep's tracking store so that a later session, on a fresh machine, can continue it.

    python studies/archive.py --store /work/study/mlflow.db --out studies/sweep-<id>.tar.gz

Why: a sweep of 35 default chains needs about 4 h of a 2-core machine, longer than one work
session, and each session gets a fresh machine. The sweep itself already continues from what
its store holds (runs are the cache), so what has to travel is the store:

- the sqlite file, copied with sqlite's backup API (consistent while a sweep still writes),
  with every chain that did not FINISH soft-deleted (its checkpoints stay behind, so it
  could not be resumed: the next sweep runs it again from the start);
- the base models' artifacts (every registered ``selfregress-base`` version), because the same
  bootstrap gives different weights on a different CPU: chains are comparable only when they
  start from the same base.

Finished chains' checkpoints are left out (about 0.75 GB a chain): the report's table and
plots read metrics only; ``report --audit`` and ``promote`` need checkpoints, so run those on
the machine that ran the chains.

Paths in the store are absolute (``/work/study/...``), and the archive's are relative to the
store's folder: unpack it at the same place (``studies/continue.sh`` does).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sqlite3
import tarfile
import tempfile
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", required=True, type=Path, help="the sweep's sqlite file")
    parser.add_argument("--out", required=True, type=Path, help="the .tar.gz to write")
    parser.add_argument("--extra", type=Path, action="append", default=[],
                        help="another sqlite file beside the store to pack as it is (a tune study's "
                             "Optuna storage); repeatable")
    parser.add_argument("--bases", choices=("all", "unshipped", "none"), default="all",
                        help="whose weights to pack: all registered bases; unshipped: not those registered "
                             "from src/selfregress/base (the repository holds them, and a store unpacked "
                             "without them gets their files back on first use, digest-checked); none: no "
                             "base at all (an imported 540 MB model too: the archive is then a record of "
                             "metrics, and a chain from that base cannot be continued from it)")
    args = parser.parse_args()
    print(archive(args.store, args.out, args.extra, bases=args.bases))


def archive(store: Path, out: Path, extra: list[Path] = (), bases: str = "all") -> str:
    """Write ``out``; paths inside it are relative to the store's folder. Returns a summary."""
    from mlflow import MlflowClient

    from selfregress.tracking import BASE_MODEL_NAME, KIND_TAG, Store

    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "mlflow.db"
        _backup(store, copy)
        client = MlflowClient(f"sqlite:///{copy}")
        stores = [Store(client, "", e.experiment_id) for e in client.search_experiments()]
        runs = [run for each in stores for run in each.find_runs("")]
        unfinished = {r.data.tags["chain_id"] for r in runs
                      if r.data.tags.get(KIND_TAG) == "chain" and r.info.status != "FINISHED"}
        for run in runs:
            if run.info.status == "RUNNING":  # e.g. the sweep's own run
                client.set_terminated(run.info.run_id, "KILLED")
            if run.data.tags.get("chain_id") in unfinished:  # the chain and its campaigns
                client.delete_run(run.info.run_id)
        # Every registered base (@base, and a shipped @small or an imported alias): a chain names
        # its start as models:/selfregress-base@<alias>. A store whose chains started from a folder
        # has none: its chains' tags name the folder and its weights' digest.
        versions = client.search_model_versions(f"name = '{BASE_MODEL_NAME}'") if any(
            m.name == BASE_MODEL_NAME for m in client.search_registered_models()) else []
        packed = [v.source.removeprefix("models:/") for v in versions if v.source.startswith("models:/m-")
                  and (bases == "all" or bases == "unshipped" and "shipped" not in v.tags)]
        base_dirs = [Path(client.get_logged_model(b).artifact_location) for b in packed]
        with contextlib.closing(sqlite3.connect(copy)) as db:
            db.execute("VACUUM")
        with tarfile.open(out, "w:gz") as tar:
            tar.add(copy, arcname="mlflow.db")
            for path in extra:   # Optuna's storage: its FAIL/RUNNING trials are Optuna's to settle on resume
                _backup(path, Path(tmp) / path.name)
                tar.add(Path(tmp) / path.name, arcname=str(path.resolve().relative_to(store.resolve().parent)))
            for base_dir in base_dirs:
                tar.add(base_dir, arcname=str(base_dir.relative_to(store.resolve().parent)))
    finished = sum(r.data.tags.get(KIND_TAG) == "chain" and r.info.status == "FINISHED" for r in runs)
    return (f"{out}: {finished} finished chains, {len(unfinished)} unfinished dropped, "
            f"bases packed: {', '.join(packed) or f'none (--bases {bases})'}; {out.stat().st_size / 1e6:.1f} MB")


def _backup(source: Path, target: Path) -> None:
    """A consistent copy of a sqlite file that a running process may still write (sqlite's backup API)."""
    with contextlib.closing(sqlite3.connect(source)) as a, contextlib.closing(sqlite3.connect(target)) as b:
        a.backup(b)


if __name__ == "__main__":
    main()
