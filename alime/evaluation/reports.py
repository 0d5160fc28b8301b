"""Reports: ``report.json`` plus a Markdown rendering of the same figures."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub Markdown table; floats with 4 decimals."""

    def cell(v: object) -> str:
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def selection_markdown(report: Mapping, descriptions: Mapping[str, str] | None = None) -> str:
    """The selection metrics as a table, best R10@1 first."""
    scorers = report["scorers"]
    names = sorted(scorers, key=lambda n: -scorers[n]["r10@1"])
    metric_names = list(next(iter(scorers.values()))) if scorers else []
    rows = [
        [n, *(scorers[n][m] for m in metric_names), (descriptions or {}).get(n, "")] for n in names
    ]
    sweep = report.get("pmi_sweep")
    extra = (
        ""
        if not sweep
        else (
            f"\n## PMI weight sweep (`{sweep['score']}`)\n\nChosen on {sweep['tune_groups']} even "
            f"groups: weight **{sweep['chosen']}**; on the {sweep['test_groups']} odd groups "
            f"it scores "
            f"R10@1 {sweep['test']['r10@1']:.4f}, MRR {sweep['test']['mrr']:.4f}.\n\n"
            + markdown_table(
                ["weight", *next(iter(sweep["weights"].values()))],
                [[w, *m.values()] for w, m in sweep["weights"].items()],
            )
        )
    )
    return (
        f"# Response selection\n\nData: `{report.get('data', '')}`, {report['groups']} groups "
        "(ties counted against the model).\n\n"
        + markdown_table(["scorer", *metric_names, "what"], rows)
        + extra
    )


def write_report(out_dir: str | Path, report: Mapping, markdown: str) -> Path:
    """Write ``report.json`` and ``report.md`` into ``out_dir`` (created); returns the folder."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(
        json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    (out / "report.md").write_text(markdown, encoding="utf-8")
    return out
