"""``alime evaluate retrieval``: parse flags, run
:func:`alime.evaluation.retrieval.evaluate_retrieval`.

Wired in by ``alime.commands.evaluate`` through :func:`register_retrieval`.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace

from alime.commands.common import config_of
from alime.config import BUNDLED_DATA


def register_retrieval(evaluate_subparsers) -> argparse.ArgumentParser:
    """Add ``retrieval`` to the ``alime evaluate`` subparsers object."""
    from alime.evaluation.retrieval import RetrievalEvalSettings

    d = RetrievalEvalSettings()
    p = evaluate_subparsers.add_parser(
        "retrieval",
        help="recall@1/5/10 and MRR of BM25, dense and hybrid on noisy queries",
        description="Rewrite held-out KB questions (synonyms, dropped/reordered words, typos, "
        "colloquial fillers; fixed seed), search the whole KB with each retrieval "
        "mode and report how often the original pair comes back.",
    )
    p.add_argument(
        "--kb",
        default=str(BUNDLED_DATA / "kb" / "ecommerce_qa.tsv"),
        help="question<TAB>answer file (default: the bundled e-commerce KB)",
    )
    p.add_argument("--model", help="seq2seq model directory (default: the configured/bundled one)")
    p.add_argument("--queries", type=int, default=d.n_queries, help="noisy queries per split")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--edits", type=int, default=d.n_edits, help="core rewrites per query")
    p.add_argument(
        "--fusion",
        choices=["tune", "config"],
        default="tune",
        help="tune: pick fusion mode and weight on the dev split (default); "
        "config: use retrieval.fusion from the config",
    )
    p.add_argument("--json", action="store_true", help="print the JSON report (default: a table)")
    p.set_defaults(func=cmd_evaluate_retrieval)
    return p


def cmd_evaluate_retrieval(args) -> int:
    from alime.evaluation.retrieval import RetrievalEvalSettings, evaluate_retrieval
    from alime.retrieval.fusion import FusionSettings
    from alime.text import TextPipeline

    config = config_of(args)  # the global --config (alime --config FILE evaluate ...)
    model = args.model or config.resolved_paths()[2]
    if model is None:
        raise SystemExit("alime evaluate retrieval: no model directory (pass --model)")
    if args.queries < 1 or args.edits < 1:
        raise SystemExit("alime evaluate retrieval: --queries and --edits must be positive")
    settings = replace(
        RetrievalEvalSettings(), n_queries=args.queries, seed=args.seed, n_edits=args.edits
    )
    r = config.retrieval
    fusion = FusionSettings.from_config(r.fusion) if args.fusion == "config" else None
    report = evaluate_retrieval(
        args.kb, model, TextPipeline(config.text), settings, r.bm25, r.dense, fusion=fusion
    )
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
        return 0
    print(f"{'mode':8s} {'R@1':>7s} {'R@5':>7s} {'R@10':>7s} {'MRR':>7s}")
    for mode, m in report["modes"].items():
        print(
            f"{mode:8s} {m['recall@1']:7.3f} {m['recall@5']:7.3f} {m['recall@10']:7.3f} "
            f"{m['mrr']:7.3f}"
        )
    f = report["fusion"]
    print(
        f"hybrid: {f['mode']} fusion, dense weight {f['dense_weight']} ({f['chosen_on']}); "
        f"{report['n_queries']['test']} test queries"
    )
    return 0
