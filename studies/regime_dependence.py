"""Issue #16's regime-dependence table: the `report` tables of two bases side by side with the paper's.

    python studies/regime_dependence.py tiny=/path/report-tiny/table.csv small=/path/report-small/table.csv \
        > studies/regime/regime-dependence.md

Each argument is NAME=table.csv as `report` writes it (one row per condition, every figure on the
report split, 5 seeds). Per base and condition: the end-of-chain pass@1 (mean over seeds, its 95%
interval), the paired difference from naive (its interval, and k/n seeds improved), and the
cross-fit within-campaign gap (peak chosen on selection, measured on report). Per base, the
conditions whose paired interval against naive lies above zero are named as the winners; where no
interval does, the base picks no winner, whatever the means say.

The paper's columns are the figures DESIGN.md quotes (Qwen-2.5-3B and -7B, pass@1 in %); the paper
gives no interval for some of them, and those cells say so.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path

CONDITIONS = ("naive", "grpo", "es", "care", "grpo_es", "kl", "ewc")
# From DESIGN.md ("Reported results"): end-of-chain pass@1, %, [95% interval] where the paper gives one.
PAPER = {
    "Qwen-2.5-3B": {"naive": "4.9", "care": "9.5 (vs naive [+0.4, +8.9], 4/5 seeds)"},
    "Qwen-2.5-7B": {"naive": "11.8", "care": "13.8", "es": "22.2 [14.1, 28.0]", "grpo": "20.7 [15.7, 25.1]",
                    "grpo_es": "17.0 [0.0, 28.1]"},
}
PAPER_NOTES = {"Qwen-2.5-3B": "CARE helped most", "Qwen-2.5-7B": "ES and GRPO won; peak-to-end gap ~17 points"}


def read_table(path: Path) -> dict[str, dict]:
    with open(path, newline="") as handle:
        return {row["condition"]: row for row in csv.DictReader(handle)}


def _num(row: dict, key: str) -> float:
    try:
        return float(row.get(key, "nan"))
    except ValueError:
        return math.nan


def _interval(row: dict, key: str) -> str:
    """``mean [low, high]`` in points; differences (every key but ``end``) carry their sign."""
    mean, low, high = (_num(row, f"{key}_{part}") for part in ("mean", "low", "high"))
    if math.isnan(mean):
        return "–"
    fmt = "{:.1f}" if key == "end" else "{:+.1f}"
    shown = fmt.format(100 * mean)
    return shown if math.isnan(low) else f"{shown} [{fmt.format(100 * low)}, {fmt.format(100 * high)}]"


def winners(table: dict[str, dict]) -> list[str]:
    """Conditions whose paired interval of the difference from naive lies wholly above zero, the
    largest mean difference first."""
    above = [c for c, row in table.items() if c != "naive" and _num(row, "vs_baseline_low") > 0]
    return sorted(above, key=lambda c: -_num(table[c], "vs_baseline_mean"))


def cell(row: dict | None) -> str:
    if row is None:
        return "not run"
    vs = _interval(row, "vs_baseline")
    pairs = f", {row.get('improved_baseline', '?')}/{row.get('n_pairs', '?')}" if vs != "–" else ""
    return f"{_interval(row, 'end')}; vs naive {vs}{pairs}; gap {_interval(row, 'crossfit_gap')}"


def markdown(tables: dict[str, dict[str, dict]]) -> str:
    present = [c for c in CONDITIONS if any(c in t for t in tables.values()) or any(c in p for p in PAPER.values())]
    head = ["condition", *(f"{name} (ours)" for name in tables), *PAPER]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for condition in present:
        ours = [cell(t.get(condition)) for t in tables.values()]
        paper = [p.get(condition, "–") for p in PAPER.values()]
        lines.append("| " + " | ".join([condition, *ours, *paper]) + " |")
    verdict = [f"| beat naive (paired interval > 0), best first | "
               + " | ".join(", ".join(winners(t)) or "none" for t in tables.values())
               + " | " + " | ".join(PAPER_NOTES.values()) + " |"]
    legend = ("\nOurs: end-of-chain pass@1 on the report split, % (mean over seeds [95% interval]); the paired "
              "difference from naive in points [interval], k/n seeds improved; the cross-fit gap from the "
              "selection-chosen peak to the campaign's end, points. Paper: DESIGN.md's figures.\n")
    return "\n".join(lines + verdict) + "\n" + legend


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tables", nargs="+", metavar="NAME=table.csv")
    args = parser.parse_args(argv)
    tables = {}
    for item in args.tables:
        name, sep, path = item.partition("=")
        if not sep or not Path(path).is_file():
            print(f"error: {item!r} is not NAME=table.csv with an existing file (report writes table.csv)",
                  file=sys.stderr)
            return 2
        tables[name] = read_table(Path(path))
    sys.stdout.write(markdown(tables))
    return 0


if __name__ == "__main__":
    sys.exit(main())
