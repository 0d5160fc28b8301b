"""``alime evaluate``: select, threshold, generate, natural, retrieval, routing. Parses flags,
calls the runner."""

from __future__ import annotations

import argparse
import json

from alime.commands.common import config_of
from alime.commands.common import positive_int as _positive_int
from alime.evaluation import scorers, threshold


def register(subparsers) -> None:
    """Add ``evaluate`` and its actions to the ``alime`` command line."""
    ev = subparsers.add_parser("evaluate", help="offline evaluation (selection, generation, T)")
    sub = ev.add_subparsers(dest="evaluate_command", metavar="ACTION")

    p = sub.add_parser("select", help="R10@1/2/5 and MRR per scorer")
    _common(p)
    p.add_argument(
        "--scorers",
        help=f"comma-separated, from {[n.value for n in scorers.ScorerName]} "
        "(default: all that the model allows)",
    )
    p.add_argument("--json", action="store_true", help="print the JSON report (default: a table)")
    p.add_argument("--dump-scores", metavar="PATH", help="one JSON line per candidate")
    p.add_argument("--out", help="folder for report.json and report.md")
    p.add_argument(
        "--pmi-sweep",
        type=_floats,
        default=(),
        metavar="W1,W2,..",
        help="lambdas of mean_logprob - lambda * prior: tuned on even groups, "
        "reported on odd groups",
    )
    p.set_defaults(func=cmd_select)

    p = sub.add_parser("threshold", help="sweep T: share answered from the KB vs precision")
    _common(p)
    p.add_argument("--out", required=True, help="folder for report.json, report.md, threshold.png")
    p.add_argument(
        "--scorer",
        default=None,
        help="the score T applies to (default: the engine's rerank score, from the "
        "model's rerank.json; seq2seq = AliMe's mean probability without one)",
    )
    p.add_argument(
        "--rule",
        default=threshold.ThresholdRule.PRECISION.value,
        choices=[r.value for r in threshold.ThresholdRule],
    )
    p.add_argument(
        "--target",
        type=float,
        default=threshold.DEFAULT_PRECISION_TARGET,
        help="precision the 'precision' rule asks for",
    )
    p.add_argument(
        "--min-answered",
        type=_positive_int,
        default=threshold.DEFAULT_MIN_ANSWERED,
        help="answered groups a precision must rest on to count",
    )
    p.add_argument(
        "--generation-quantile", type=float, default=threshold.DEFAULT_GENERATION_QUANTILE
    )
    p.add_argument(
        "--generation-limit",
        type=_positive_int,
        default=200,
        help="contexts generated for to choose G",
    )
    p.add_argument(
        "--write-model", action="store_true", help="store T and G in MODEL/thresholds.json"
    )
    p.set_defaults(func=cmd_threshold)

    p = sub.add_parser("generate", help="BLEU, distinct-1/2, length, generic-reply share")
    p.add_argument("--data", required=True)
    p.add_argument("--model", help="model directory (default: the bundled model)")
    p.add_argument("--limit", type=_positive_int, help="first N held-out dialogues")
    p.add_argument("--skip", type=int, default=0, help="held-out dialogues skipped before --limit")
    p.add_argument("--beam-size", type=_positive_int, default=5)
    p.add_argument(
        "--anti-lm-weight",
        type=float,
        help="MMI-antiLM lambda (default: engine.anti_lm_weight of the config)",
    )
    p.add_argument("--anti-lm-steps", type=int, help="tokens the anti-LM term applies to")
    p.add_argument("--min-len", type=int, help="fewest tokens per answer")
    p.add_argument("--json", action="store_true", help="print the JSON report")
    p.add_argument("--out", help="folder for report.json, report.md and samples.jsonl")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_generate)

    from alime.commands.evaluate_retrieval import register_retrieval

    register_retrieval(sub)  # recall@k of BM25 / dense / hybrid on noisy queries
    from alime.commands.evaluate_routing import register_routing

    register_routing(sub)  # in-KB answered from the KB vs out-of-KB routed away
    from alime.commands.evaluate_natural import register_natural

    register_natural(sub)  # acceptable answers to shopper-style queries

    ev.set_defaults(func=lambda args: ev.print_help() or 2)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="E-commerce-format groups of 10 lines")
    p.add_argument(
        "--model", help="model directory (default: the bundled model, if any; 'none': no model)"
    )
    p.add_argument("--limit", type=_positive_int, help="first N groups")
    p.add_argument("--pmi-weight", type=float, default=0.5, help="lambda of the pmi scorer")
    p.add_argument(
        "--query-turns", type=_positive_int, default=3, help="last turns in the BM25 query"
    )
    p.add_argument("--no-progress", action="store_true")


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}"
        ) from None


def _config_and_model(args):

    config = config_of(args)
    if args.model == "none":
        return config, None
    return config, args.model or config.resolved_paths()[2]


def _select_options(args):
    from alime.evaluation.runner import SelectOptions

    return SelectOptions(
        getattr(args, "scorers", None),
        args.limit,
        args.pmi_weight,
        args.query_turns,
        getattr(args, "pmi_sweep", ()),
    )


def cmd_select(args) -> int:
    from alime.evaluation.reports import selection_markdown
    from alime.evaluation.runner import run_select

    config, model = _config_and_model(args)
    report = run_select(
        args.data,
        model,
        _select_options(args),
        config,
        args.dump_scores,
        args.out,
        progress=not args.no_progress,
    )
    print(json.dumps(report) if args.json else selection_markdown({**report, "data": args.data}))
    return 0


def cmd_threshold(args) -> int:
    from alime.evaluation.runner import ThresholdOptions, run_threshold

    config, model = _config_and_model(args)
    opts = ThresholdOptions(
        args.scorer,
        threshold.ThresholdRule(args.rule),
        args.target,
        args.generation_quantile,
        args.generation_limit,
        args.min_answered,
    )
    report = run_threshold(
        args.data,
        model,
        args.out,
        opts,
        _select_options(args),
        config,
        args.write_model,
        progress=not args.no_progress,
    )
    summary = {
        k: report[k]
        for k in (
            "scorer",
            "groups",
            "threshold",
            "rule",
            "chosen",
            "generation_threshold",
            "generation_rule",
        )
    }
    print(json.dumps({**summary, "out": args.out}, ensure_ascii=False))
    return 0


def cmd_generate(args) -> int:
    import dataclasses

    from alime.evaluation.runner import run_generate

    config, model = _config_and_model(args)
    overrides = {
        k: v
        for k, v in (
            ("anti_lm_weight", args.anti_lm_weight),
            ("anti_lm_steps", args.anti_lm_steps),
            ("min_answer_tokens", args.min_len),
        )
        if v is not None
    }
    config = dataclasses.replace(config, engine=dataclasses.replace(config.engine, **overrides))
    report = run_generate(
        args.data,
        model,
        args.limit,
        config,
        args.out,
        progress=not args.no_progress,
        beam_size=args.beam_size,
        skip=args.skip,
    )
    print(json.dumps(report, ensure_ascii=False, indent=None if args.json else 2))
    return 0
