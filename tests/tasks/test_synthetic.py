"""The synthetic generator: op table, references, edge cases, tiers, disjoint splits, speed."""

import random
import re
import time
from collections import Counter

import pytest

from selfregress.tasks import SPLITS, SyntheticConfig, TaskError, load_tasks, synthetic_splits
from selfregress.tasks.ops import HEADER_CODE, INTS, OPS, PROBES, WORD, candidate_inputs, render_input
from selfregress.tasks.synthetic import render, sample_chain

ALL_OPS = [op for ops in OPS.values() for op in ops]


def _pattern(op):
    """A regex for the op's code line; its groups are the constant."""
    text = re.escape(op.code)
    text = text.replace(r"\{k\[0\]\}", "([a-z])").replace(r"\{k\[1\]\}", "([a-z])")
    return re.compile(text.replace(r"\{k\}", "(-?[0-9]+|[a-z])") + "$")


PATTERNS = [(op, _pattern(op)) for op in ALL_OPS]


def decompose(reference: str):
    """(domain, [(op, k), ...]) read back from a reference program, line by line."""
    domain = INTS if reference.startswith(HEADER_CODE[INTS]) else WORD
    assert reference.startswith(HEADER_CODE[domain])
    steps = []
    for line in reference[len(HEADER_CODE[domain]):].strip("\n").split("\n"):
        matches = []
        for op, pattern in PATTERNS:
            m = pattern.match(line)
            if m:
                groups = [int(g) if g.lstrip("-").isdigit() else g for g in m.groups()]
                k = tuple(groups) if isinstance(op.consts[0], tuple) else groups[0] if groups else None
                if k in op.consts and op.line(k) == line:
                    matches.append((op, k))
        assert len(matches) == 1, f"line {line!r} is not exactly one op line: {matches}"
        steps.append(matches[0])
    return domain, steps


def all_tasks(splits):
    return [(name, t) for name in SPLITS for t in getattr(splits, name)]


# -- the op table ----------------------------------------------------------------------------
def test_op_table_has_enough_kinds_and_phrasings():
    assert len(ALL_OPS) >= 30
    kinds = Counter(op.kind for op in ALL_OPS)
    for kind in ("filter", "map", "order", "dedupe", "prefix", "slice", "reduce", "count", "predicate", "string"):
        assert kinds[kind] >= 1, kind
    assert len({op.name for op in ALL_OPS}) == len(ALL_OPS)
    for op in ALL_OPS:
        assert 2 <= len(op.phrasings) <= 4, op.name
        assert len(set(op.phrasings)) == len(op.phrasings)
        assert "\n" not in op.code
        has_constant = op.consts != (None,)
        assert ("{k" in op.code) == has_constant, op.name
        for phrasing in op.phrasings:  # the constant is in every phrasing, so it must be read
            assert ("{k" in phrasing) == has_constant, (op.name, phrasing)


@pytest.mark.parametrize("op", ALL_OPS, ids=lambda op: op.name)
def test_op_code_line_matches_its_function(op, stdio):
    """The canonical line and the Python function that computes expected outputs agree."""
    domain = INTS if INTS in op.accepts else WORD
    rng = random.Random(op.name)
    values = [*PROBES[domain], *candidate_inputs(domain, rng, [3, "a"], n_random=10)]
    for k in op.consts:
        lines = [HEADER_CODE[domain], op.line(k)]
        if not op.terminal:
            lines.append("print(*a)" if domain == INTS else "print(s)")
        code = compile("\n".join(lines), op.name, "exec")
        for value in values:
            want = op.fn(value, k)
            if not op.terminal:
                want = " ".join(map(str, want)) if domain == INTS else want
            assert stdio(code, render_input(domain, value)) == want + "\n", (op.name, k, value)


# -- every task ------------------------------------------------------------------------------
def test_every_reference_reproduces_every_expected_output(default_splits, stdio):
    for _, task in all_tasks(default_splits):
        code = compile(task.solutions[0], task.task_id, "exec")
        for test in task.tests:
            assert stdio(code, test["input"]) == test["output"], (task.task_id, test)


def test_tasks_are_well_formed_short_and_canonical(default_splits):
    for _, task in all_tasks(default_splits):
        assert task.source == "synthetic" and task.fn_name is None and len(task.solutions) == 1
        assert len(task.tests) >= 5
        assert len(task.prompt) <= 300 and task.prompt.count(".") <= 4, task.prompt
        reference = task.solutions[0]
        assert len(reference) <= 200 and reference.count("\n") <= 5, reference
        domain, steps = decompose(reference)
        assert steps[-1][0].terminal and not any(op.terminal for op, _ in steps[:-1])
        slots = [op.slot for op, _ in steps[:-1]]
        assert slots == sorted(set(slots)), (task.task_id, slots)  # at most one per slot, in order
        assert task.difficulty == sum(op.cost for op, _ in steps) in (1, 2, 3)
        for op, k in steps:  # constants appear verbatim in the statement and the code
            for c in (k if isinstance(k, tuple) else (k,)):
                if c is not None:
                    assert str(c) in task.prompt and str(c) in reference, (task.task_id, op.name)


def test_tests_include_edge_cases_and_distinguish_programs(default_splits):
    for _, task in all_tasks(default_splits):
        inputs = [t["input"] for t in task.tests]
        if task.solutions[0].startswith(HEADER_CODE[INTS]):
            lists = [[int(x) for x in i.split("\n")[1].split()] for i in inputs]
            assert all(i == f"{len(v)}\n{' '.join(map(str, v))}\n" for i, v in zip(inputs, lists))
            assert [] in lists and any(len(v) == 1 for v in lists), task.task_id
            assert any(len(set(v)) < len(v) and min(v) < 0 for v in lists), task.task_id
        else:
            words = [i[:-1] for i in inputs]
            assert "" in words and any(len(w) == 1 for w in words), task.task_id
            assert any(len(w) > 1 and w == w[::-1] for w in words), task.task_id
        assert len({t["output"] for t in task.tests}) >= 2, task.task_id  # no constant answer passes


def test_all_tiers_and_both_domains_in_every_split(default_splits):
    for name in SPLITS:
        tasks = getattr(default_splits, name)
        assert {t.difficulty for t in tasks} == {1, 2, 3}, name
        domains = Counter(t.solutions[0].startswith(HEADER_CODE[INTS]) for t in tasks)
        assert domains[True] > 0.4 * len(tasks) and domains[False] > 0.15 * len(tasks)


def test_every_phrasing_is_used(default_splits):
    seen = set()
    for task in default_splits.pretrain:
        _, steps = decompose(task.solutions[0])
        for op, k in steps:
            for i, phrasing in enumerate(op.phrasings):
                if phrasing.format(k=k).lower() in task.prompt.lower():
                    seen.add((op.name, i))
    assert seen == {(op.name, i) for op in ALL_OPS for i in range(len(op.phrasings))}


# -- splits ----------------------------------------------------------------------------------
def test_split_sizes(default_splits):
    assert [len(getattr(default_splits, s)) for s in SPLITS] == [4000, 256, 256, 256]


def test_splits_are_disjoint_by_composition_and_by_behaviour(default_splits, stdio):
    """No problem is in two splits: neither the same ops and constants (the reference is the
    canonical text of the composition, whatever the phrasing or tests), nor the same
    behaviour (outputs of the reference program itself on probe inputs and extra inputs).
    rl, eval and test hold each problem once; pretrain at most `pretrain_copies` times."""
    rng = random.Random(12345)
    extra = {INTS: [[rng.randint(-20, 30) for _ in range(rng.randint(0, 9))] for _ in range(12)],
             WORD: ["".join(rng.choices("abcdeilmnorstuxyz", k=rng.randint(0, 12))) for _ in range(12)]}
    compositions = {name: Counter() for name in SPLITS}
    behaviours = {name: Counter() for name in SPLITS}
    for name, task in all_tasks(default_splits):
        reference = task.solutions[0]
        domain = INTS if reference.startswith(HEADER_CODE[INTS]) else WORD
        code = compile(reference, task.task_id, "exec")
        compositions[name][reference] += 1
        outputs = tuple(stdio(code, render_input(domain, v)) for v in (*PROBES[domain], *extra[domain]))
        behaviours[name][(domain, outputs)] += 1
    for name in SPLITS:
        limit = SyntheticConfig().pretrain_copies if name == "pretrain" else 1
        assert max(compositions[name].values()) <= limit and max(behaviours[name].values()) <= limit, name
    assert len(behaviours["pretrain"]) > 2000  # repeats are the exception
    for i, a in enumerate(SPLITS):
        for b in SPLITS[i + 1:]:
            assert not compositions[a].keys() & compositions[b].keys(), (a, b)
            assert not behaviours[a].keys() & behaviours[b].keys(), (a, b)


def test_splits_of_different_seeds_are_disjoint_too(default_splits):
    """A base model trained on pretrain(seed=0) may be evaluated on eval(seed=3), and back."""
    other = synthetic_splits(seed=3, n_pretrain=1000)
    for a, b in (("pretrain", "eval"), ("pretrain", "test"), ("pretrain", "rl"), ("rl", "eval")):
        for x, y in ((default_splits, other), (other, default_splits)):
            assert not {t.solutions[0] for t in getattr(x, a)} & {t.solutions[0] for t in getattr(y, b)}


def test_deterministic_for_a_seed_and_different_across_seeds():
    small = dict(n_pretrain=100, n_rl=20, n_eval=20, n_test=20)
    a = synthetic_splits(seed=7, **small)
    b = synthetic_splits(seed=7, **small)
    c = synthetic_splits(seed=8, **small)
    dump = lambda s: [t.to_dict() for name in SPLITS for t in getattr(s, name)]  # noqa: E731
    assert dump(a) == dump(b)
    assert {t.solutions[0] for t in a.eval} != {t.solutions[0] for t in c.eval}


def test_each_split_is_prefix_stable(default_splits):
    """Asking for fewer tasks, or for one split only, gives a prefix of the same tasks."""
    eval_only = synthetic_splits(seed=0, n_pretrain=0, n_rl=0, n_eval=40, n_test=0)
    assert [t.to_dict() for t in eval_only.eval] == [t.to_dict() for t in default_splits.eval[:40]]
    assert eval_only.pretrain == eval_only.rl == eval_only.test == []
    assert load_tasks("synthetic:5", split="rl") == default_splits.rl[:5]
    assert load_tasks("synthetic:3") == default_splits.pretrain[:3]


def test_generation_is_fast():
    started = time.process_time()
    splits = synthetic_splits(seed=3)
    seconds = time.process_time() - started
    print(f"synthetic_splits(seed=3): {sum(len(getattr(splits, s)) for s in SPLITS)} tasks in {seconds:.2f} s CPU")
    assert seconds < 3.0


def test_statement_and_reference_follow_the_sampled_composition():
    rng = random.Random(0)
    config = SyntheticConfig()
    for _ in range(300):
        domain, tier, steps = sample_chain(rng, config)
        statement, reference = render(domain, steps, rng)
        assert decompose(reference) == (domain, list(steps))
        assert tier == sum(op.cost for op, _ in steps)


def test_bad_requests_fail_with_one_line():
    with pytest.raises(TaskError, match="n_eval"):
        synthetic_splits(n_eval=-1)
    with pytest.raises(TaskError, match="n_tests"):
        SyntheticConfig(n_tests=3)
    with pytest.raises(TaskError, match="tier_weights"):
        SyntheticConfig(tier_weights=(1.0, -1.0, 0.0))
    with pytest.raises(TaskError, match=r"ran out of distinct synthetic problems \(eval \d+/200\)"):
        # tier 1 holds ~300 problems, and eval owns 8% of them
        synthetic_splits(n_pretrain=0, n_rl=0, n_eval=200, n_test=0,
                         config=SyntheticConfig(tier_weights=(1.0, 0.0, 0.0)))
    with pytest.raises(TaskError, match="split"):
        load_tasks("synthetic:3", split="valid")
