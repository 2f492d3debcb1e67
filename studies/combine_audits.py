"""Combine the stability audits of a study that ran in parts (one `report --audit true` per seed)
into one audit section: the rows of each part's audit.csv, pooled by `audit.audit_markdown`.

    python studies/combine_audits.py /work/study15/audit-s0/audit.csv /work/study15/audit-s1/audit.csv ...
"""

from __future__ import annotations

import csv
import sys

from selfregress.audit import audit_markdown

BOOLEAN = ("peak_collapsed", "end_collapsed")
TEXT = ("condition",)


def read_rows(path: str) -> list[dict]:
    rows = []
    with open(path) as f:
        for row in csv.DictReader(f):
            rows.append({k: (v == "True" if k in BOOLEAN else v if k in TEXT else float(v)) for k, v in row.items()})
    return rows


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: python studies/combine_audits.py AUDIT_CSV [AUDIT_CSV ...]")
    rows = [row for path in sys.argv[1:] for row in read_rows(path)]
    print(audit_markdown(rows))
    print(f"\n({len(rows)} campaigns from {len(sys.argv) - 1} audit files)")
