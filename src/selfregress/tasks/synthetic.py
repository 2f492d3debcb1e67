"""A seeded generator of small stdin/stdout problems, split into disjoint task sets.

A problem is a composition: up to three transforms (filter, map, order/slice; or letter
edit, rearrangement, cut/case), in that fixed slot order, then one terminal that prints (a
sum, a count, YES/NO, the value itself). Its tier is the number of operations that do
something (1-3; plainly printing the value does not count). Statement, tests and reference
come from the ops table in ``ops.py``.

Splits are disjoint by *behaviour*, which is stricter than by composition: a problem's
fingerprint is its output on fixed probe inputs (``ops.PROBES``), and a hash of the
fingerprint decides which split owns it, whatever the seed: the seed changes which problems
are drawn and their phrasing and tests, never which split a problem belongs to, so splits of
different seeds are disjoint too. So "take absolute values, then count the distinct
values" and "square, then count the distinct values" land in the same split, as do two
phrasings of one problem. rl, eval and
test hold each behaviour once; pretrain (the SFT pool) may repeat one up to
``pretrain_copies`` times, with new phrasing and tests: low tiers hold few distinct problems,
and without repeats the pool would be mostly tier 3. So a slice of pretrain is not held out
from the rest of it; use eval for held-out numbers.

Every split is a prefix-stable stream: the first N eval tasks do not depend on how many
pretrain, rl or test tasks were asked for (each draw has its own seed, and a split takes
the draws that hash into it, in order).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import random
from collections import Counter
from dataclasses import dataclass, field

from selfregress.tasks.ops import (HEADER_CODE, HEADERS, INTS, N_SLOTS, OPS, PROBES, WORD, Op,
                                   candidate_inputs, render_input)
from selfregress.tasks.schema import Task, TaskError

SPLITS = ("pretrain", "rl", "eval", "test")
DEFAULT_SIZES = {"pretrain": 4000, "rl": 256, "eval": 256, "test": 256}


@dataclass(frozen=True)
class SyntheticConfig:
    """How problems are drawn. The defaults are what the embedded testbed uses."""
    tier_weights: tuple[float, float, float] = (0.25, 0.5, 0.25)  # P(tier 1, 2, 3) per draw
    domain_weights: tuple[float, float] = (0.65, 0.35)  # P(list of ints), P(word)
    print_weight: float = 0.4         # P(the terminal just prints the value): such problems
                                      # are one transform longer, and far more numerous
    pretrain_copies: int = 4          # how often pretrain may repeat one problem
    n_tests: int = 6                  # tests per problem, edge cases included
    holdout_fraction: float = 0.08    # share of fingerprints owned by each of rl, eval, test
    time_limit_s: float = 2.0         # per-test CPU limit written into each task
    memory_mb: int = 256              # memory limit written into each task

    def __post_init__(self):
        if len(self.tier_weights) != 3 or min(self.tier_weights) < 0 or sum(self.tier_weights) <= 0:
            raise TaskError(f"tier_weights must be 3 non-negative numbers, got {self.tier_weights}")
        if len(self.domain_weights) != 2 or min(self.domain_weights) < 0 or sum(self.domain_weights) <= 0:
            raise TaskError(f"domain_weights must be 2 non-negative numbers, got {self.domain_weights}")
        if self.n_tests < 5:
            raise TaskError(f"n_tests must be at least 5, got {self.n_tests}")
        if self.pretrain_copies < 1:
            raise TaskError(f"pretrain_copies must be at least 1, got {self.pretrain_copies}")
        if not 0 < self.holdout_fraction <= 0.3:
            raise TaskError(f"holdout_fraction must be in (0, 0.3], got {self.holdout_fraction}")


@dataclass(frozen=True)
class Splits:
    """pretrain: SFT pool of the base model; rl: the fixed RL set; eval: held out, evaluated
    every step; test: held out, used only by `promote`. Pairwise disjoint by behaviour."""
    pretrain: list[Task] = field(default_factory=list)
    rl: list[Task] = field(default_factory=list)
    eval: list[Task] = field(default_factory=list)
    test: list[Task] = field(default_factory=list)


Step = tuple[Op, object]               # an op and its constant


# -- composition ---------------------------------------------------------------------------
def sample_chain(rng: random.Random, config: SyntheticConfig) -> tuple[str, int, tuple[Step, ...]]:
    """(domain, tier, steps): transforms in slot order, one per chosen slot, then a terminal."""
    domain = INTS if rng.random() * sum(config.domain_weights) < config.domain_weights[0] else WORD
    u = rng.random() * sum(config.tier_weights)
    tier = 1 if u < config.tier_weights[0] else 2 if u < sum(config.tier_weights[:2]) else 3
    printer, reducers = _TERMINALS[domain]
    while True:  # rejection: only `upper` then a letter-counting terminal is invalid
        terminal = printer if rng.random() < config.print_weight else rng.choice(reducers)
        steps: list[Step] = []
        kind = domain
        for slot in rng.choice(_SLOT_SETS[tier - terminal.cost]):
            op = rng.choice(_TRANSFORMS[domain][slot])
            steps.append((op, rng.choice(op.consts)))
            kind = op.output or kind
        if kind in terminal.accepts:
            return domain, tier, (*steps, (terminal, rng.choice(terminal.consts)))


# Lookup tables for sample_chain: the ordered slot sets of each size; per domain, the
# transforms of each slot, the plain printer and the terminals that compute something.
_SLOT_SETS = [list(itertools.combinations(range(N_SLOTS), n)) for n in range(N_SLOTS + 1)]
_TRANSFORMS = {domain: [[op for op in ops if not op.terminal and op.slot == slot]
                        for slot in range(N_SLOTS)] for domain, ops in OPS.items()}
_TERMINALS = {domain: (next(op for op in ops if op.terminal and op.cost == 0),
                       [op for op in ops if op.terminal and op.cost == 1]) for domain, ops in OPS.items()}


def run_chain(steps: tuple[Step, ...], value) -> str:
    """The exact stdout of the composition on one input value."""
    for op, k in steps[:-1]:
        value = op.fn(value, k)
    op, k = steps[-1]
    return op.fn(value, k) + "\n"


def fingerprint(domain: str, steps: tuple[Step, ...]) -> tuple[str, ...]:
    """The outputs on the fixed probes: same fingerprint, same problem (for our purposes)."""
    values = PROBES[domain]
    for op, k in steps[:-1]:  # op-major, not probe-major: this is the generator's hot loop
        values = [op.fn(v, k) for v in values]
    op, k = steps[-1]
    return tuple([op.fn(v, k) + "\n" for v in values])


def is_useful(domain: str, steps: tuple[Step, ...], fp: tuple[str, ...]) -> bool:
    """Reject problems with near-constant answers, and ones where some transform does
    nothing (e.g. "sort, then print the sum"): the model could pass without reading it."""
    if len(set(fp)) < (2 if steps[-1][0].binary else 3):
        return False
    probes = PROBES[domain]
    for i in range(len(steps) - 1):
        fewer = steps[:i] + steps[i + 1:]
        # Early exit: the rich probes come first, so a difference shows up at once.
        if _types_ok(domain, fewer) and all(run_chain(fewer, p) == out for p, out in zip(probes, fp)):
            return False
    return True


def _types_ok(domain: str, steps: tuple[Step, ...]) -> bool:
    kind = domain
    for op, _ in steps:
        if kind not in op.accepts:
            return False
        kind = op.output or kind
    return True


def owner(domain: str, fp: tuple[str, ...], holdout_fraction: float) -> str:
    """The split that owns a behaviour: a hash of it (stable across processes). Not seeded:
    the pretrain pool of one seed must stay disjoint from the eval set of every other seed
    (the base model is trained once, chains run with several seeds)."""
    digest = hashlib.blake2b(repr(("selfregress/v1", domain, fp)).encode(), digest_size=8).digest()
    u = int.from_bytes(digest, "big") / 2.0**64
    index = int(u / holdout_fraction)
    return ("test", "eval", "rl")[index] if index < 3 else "pretrain"


# -- one task ------------------------------------------------------------------------------
def render(domain: str, steps: tuple[Step, ...], rng: random.Random) -> tuple[str, str]:
    """(statement, reference program), with a random phrasing of each operation."""
    clauses = [rng.choice(op.phrasings).format(k=k) for op, k in steps]
    body = ", then ".join(clauses)
    statement = f"{rng.choice(HEADERS[domain])} {body[0].upper()}{body[1:]}."
    reference = "\n".join([HEADER_CODE[domain]] + [op.line(k) for op, k in steps])
    return statement, reference


def choose_tests(domain: str, steps: tuple[Step, ...], rng: random.Random, n_tests: int) -> list[dict] | None:
    """The edge cases (empty, single, duplicates-with-a-negative or a palindrome), then the
    candidates that give new outputs; None when the answers would be too uniform to tell a
    right program from a lucky constant."""
    pool = candidate_inputs(domain, rng, [k for _, k in steps if k is not None])
    outputs = [run_chain(steps, value) for value in pool]
    chosen = [0, 1, 2]
    seen = set(outputs[:3])
    for i in range(3, len(pool)):
        if len(chosen) < n_tests and outputs[i] not in seen:
            chosen.append(i)
            seen.add(outputs[i])
    chosen += [i for i in range(3, len(pool)) if i not in chosen][: n_tests - len(chosen)]
    if len(seen) < (2 if steps[-1][0].binary else 3):
        return None
    return [{"input": render_input(domain, pool[i]), "output": outputs[i]} for i in sorted(chosen)]


# -- the splits ----------------------------------------------------------------------------
def synthetic_splits(seed: int = 0, n_pretrain: int = 4000, n_rl: int = 256, n_eval: int = 256,
                     n_test: int = 256, config: SyntheticConfig = SyntheticConfig()) -> Splits:
    """Deterministic for (seed, config); each split is a prefix-stable stream of draws.

    The draws take about a second per thousand tasks and a chain asks for the same splits
    several times (RL/selection, report, digests), so they are computed once per process: the
    caller gets its own lists (of the same frozen tasks)."""
    cached = _synthetic_splits(seed, n_pretrain, n_rl, n_eval, n_test, config)
    return Splits(**{name: list(tasks) for name, tasks in zip(SPLITS, cached)})


@functools.lru_cache(maxsize=16)
def _synthetic_splits(seed, n_pretrain, n_rl, n_eval, n_test, config: SyntheticConfig) -> tuple:
    want = {"pretrain": n_pretrain, "rl": n_rl, "eval": n_eval, "test": n_test}
    for name, n in want.items():
        if not isinstance(n, int) or n < 0:
            raise TaskError(f"n_{name} must be a non-negative integer, got {n!r}")
    out: dict[str, list[Task]] = {name: [] for name in SPLITS}
    copies: Counter = Counter()         # (domain, fingerprint) -> tasks of it so far
    cache: dict = {}                    # composition -> (fingerprint, owning split or False)
    master = random.Random(f"selfregress.tasks.synthetic:{seed}")
    stalled = 0                         # draws since a task was last accepted
    while any(len(out[s]) < want[s] for s in SPLITS):
        stalled += 1
        if stalled > 20_000:  # a few seconds: the unfilled splits own no new problems
            short = [f"{s} {len(out[s])}/{want[s]}" for s in SPLITS if len(out[s]) < want[s]]
            raise TaskError(f"ran out of distinct synthetic problems ({', '.join(short)}); "
                            "ask for fewer tasks, or raise holdout_fraction or pretrain_copies")
        domain, tier, steps = sample_chain(master, config)
        task_seed = master.getrandbits(64)  # drawn every time, so draws stay aligned
        key = (domain, tuple((op.name, k) for op, k in steps))
        if key not in cache:
            fp = fingerprint(domain, steps)
            useful = is_useful(domain, steps, fp)
            cache[key] = (fp, useful and owner(domain, fp, config.holdout_fraction))
        fp, split = cache[key]
        if not split or len(out[split]) >= want[split]:
            continue
        if copies[domain, fp] >= (config.pretrain_copies if split == "pretrain" else 1):
            continue
        rng = random.Random(task_seed)
        tests = choose_tests(domain, steps, rng, config.n_tests)
        if tests is None:
            continue
        statement, reference = render(domain, steps, rng)
        copies[domain, fp] += 1
        stalled = 0
        out[split].append(Task(
            task_id=f"synthetic/s{seed}-{split}-{len(out[split]):04d}", prompt=statement,
            tests=tuple(tests), time_limit_s=config.time_limit_s, memory_mb=config.memory_mb,
            source="synthetic", difficulty=tier, solutions=(reference,)))
    return tuple(tuple(out[name]) for name in SPLITS)


def synthetic_tasks(n: int | None = None, split: str = "all", seed: int = 0,
                    config: SyntheticConfig = SyntheticConfig()) -> list[Task]:
    """One split (its first n tasks), or "all": pretrain + rl + eval + test at the default
    sizes, in that order, cut to n."""
    if split not in (*SPLITS, "all"):
        raise TaskError(f"unknown split {split!r}; choose one of {', '.join((*SPLITS, 'all'))}")
    if n is not None and n < 1:
        raise TaskError(f"the number of synthetic tasks must be at least 1, got {n}")
    if split == "all":
        # Prefix-stable splits: the first n of the concatenation need only these sizes.
        sizes, left = {}, n if n is not None else sum(DEFAULT_SIZES.values())
        for name in SPLITS:
            sizes[f"n_{name}"] = min(left, DEFAULT_SIZES[name])
            left -= sizes[f"n_{name}"]
        splits = synthetic_splits(seed, config=config, **sizes)
        return [t for name in SPLITS for t in getattr(splits, name)]
    # Splits are prefix-stable, so generating only this one gives the same tasks.
    sizes = {f"n_{name}": 0 for name in SPLITS}
    sizes[f"n_{split}"] = n if n is not None else DEFAULT_SIZES[split]
    return getattr(synthetic_splits(seed, config=config, **sizes), split)
