"""Median time of one rerank call (a query with its 10 candidates) per engine scorer.

    python -m research.rerank_speed --data data/eval/valid_faithful.txt \\
        --model data/model-int8 --scorers pmi,stacked [--groups 200]
    python -m research.rerank_speed --kb data/kb/ecommerce_qa.tsv --model data/model-int8

``--kb`` times the served workload instead: a KB question with 10 KB answers (seeded draw;
the engine reranks retrieved KB answers, which are shorter than a selection file's replies).

Each scorer is built as the engine builds it (``alime.rerank.loading.load_serving_model`` and
``make_scorer``; the prior cache warm from one pass over the groups, as a KB's answers recur)
and timed on the same groups, alternating scorers group by group so machine load hits both alike.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Sequence


def _kb_groups(args: argparse.Namespace) -> list:
    """``args.groups`` KB questions, each with 10 KB answers drawn with a fixed seed."""
    import numpy as np

    from alime.evaluation.corpus import Group

    with open(args.kb, encoding="utf-8") as fh:
        pairs = [line.rstrip("\n").split("\t") for line in fh if "\t" in line]
    rng = np.random.default_rng(2017)
    answers = [a for _, a in pairs]
    groups = []
    for i in rng.permutation(len(pairs))[: args.groups]:
        picked = tuple(answers[j] for j in rng.choice(len(answers), 10, replace=False))
        groups.append(Group((pairs[i][0],), picked, 0, int(i) + 1))
    return groups


def main(argv: Sequence[str] | None = None) -> int:
    """Print ``{"scorer": {"median_ms", "p90_ms"}}`` as JSON."""
    parser = argparse.ArgumentParser(prog="python -m research.rerank_speed")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", help="a response-selection file")
    source.add_argument("--kb", help="a TSV KB (question \\t answer)")
    parser.add_argument("--model", required=True)
    parser.add_argument("--scorers", default="pmi,stacked")
    parser.add_argument("--groups", type=int, default=200)
    args = parser.parse_args(argv)
    from alime.config import AppConfig
    from alime.evaluation.corpus import read_groups
    from alime.rerank.loading import load_serving_model
    from alime.rerank.scorers import make_scorer
    from alime.text import TextPipeline

    pipeline = TextPipeline(AppConfig().text)
    model = load_serving_model(args.model)
    groups = read_groups(args.data, limit=args.groups) if args.data else _kb_groups(args)
    names = [n for n in args.scorers.split(",") if n]
    options = {"pmi": {"weight": 0.5}}
    scorers = {n: make_scorer(n, model, pipeline, **options.get(n, {})) for n in names}
    for s in scorers.values():  # warm-up: traces graphs, fills prior caches
        for g in groups:
            s.score(g.query, g.context, g.responses)
    times: dict[str, list[float]] = {n: [] for n in names}
    for g in groups:
        for n, s in scorers.items():
            start = time.perf_counter()
            s.score(g.query, g.context, g.responses)
            times[n].append((time.perf_counter() - start) * 1000)
    report = {
        n: {
            "median_ms": round(statistics.median(t), 3),
            "p90_ms": round(statistics.quantiles(t, n=10)[-1], 3),
        }
        for n, t in times.items()
    }
    print(json.dumps({"model": args.model, "groups": len(groups), "scorers": report}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
