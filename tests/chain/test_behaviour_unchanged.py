"""A chain at a fixed seed gives the same pass@1 curve and decisions as before the #14 redesign.

The figures in curves_before_house.json were recorded by the code before the redesign on the
tiny base of conftest.py. The same bootstrap code can give different base weights on another
machine (see the README's note on determinism), so the test compares only where the tiny base
is bit-identical to the one the figures were recorded on, and skips (saying why) elsewhere.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from selfregress.chain import run_chain
from selfregress.chain_config import ChainConfig
from selfregress.config import parse
from selfregress.records import campaign_records

from .conftest import TINY_CHAIN

RECORDED = json.loads((Path(__file__).parent / "curves_before_house.json").read_text())


@pytest.fixture(scope="module")
def grader_pool():
    from grader import Grader

    with Grader(workers=2) as g:
        yield g


@pytest.mark.parametrize("condition", sorted(RECORDED["conditions"]))
def test_same_curve_as_before_the_redesign(condition, mlflow_store, grader_pool, tiny_base):
    weights = hashlib.sha256((Path(tiny_base) / "model.safetensors").read_bytes()).hexdigest()
    if weights != RECORDED["tiny_base_sha256"]:
        pytest.skip("this machine's tiny base differs from the one the figures were recorded on")
    lines = []
    config = parse(ChainConfig, {**TINY_CHAIN, **RECORDED["chain"], "model": tiny_base, "condition": condition})
    records = campaign_records(mlflow_store, run_chain(config, mlflow_store, grader_pool, tiny_base, log=lines.append))
    expected = RECORDED["conditions"][condition]
    assert [r.pass_at_1 for r in records] == expected["pass_at_1"]
    assert [r.tags["controller/decision"] for r in records] == expected["decisions"]
    # the chain's last line is its summary: end, peak, and the run's link
    assert lines[-1].startswith(f"chain {records[0].tags['chain_id']} ({condition}, seed 0) done: "
                                f"end pass@1 {expected['pass_at_1'][-1][-1]:.3f}, "
                                f"peak {max(max(c) for c in expected['pass_at_1']):.3f}; run: http")
