"""One markdown table from a list of row dicts (columns in first-seen order), as the benchmarks print them."""
from __future__ import annotations


def markdown_table(rows: list[dict]) -> str:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row.get(c, "")).replace("|", "/") for c in columns) + " |" for row in rows]
    return "\n".join(lines)
