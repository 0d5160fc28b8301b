"""Fit the stacked rerank score (``alime.rerank.stacking``) and compare feature sets.

Inputs are response-selection files and their per-candidate score dumps
(``alime evaluate select --data FILE --model DIR --dump-scores PATH``): one built from the
model's *training* dialogues (``research.faithful_validation build --side train``) to fit on,
and the faithful validation file to choose on. The validation groups are never fitted on.

Model: a conditional logit, i.e. a softmax over each group's candidates of ``w . z`` with ``z``
the standardized features (optionally followed by their pairwise products); L2 penalty
``l2 * |w|^2 / 2``; fitted by Newton's method (a few dozen weights, so the Hessian is tiny)::

    python -m research.stacking --train-data T.txt --train-scores T.jsonl \\
        --valid-data data/eval/valid_faithful.txt --valid-scores V.jsonl [--write-model DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from alime.evaluation.corpus import Group, read_groups
from alime.evaluation.metrics import rank_of_true, selection_metrics
from alime.rerank.stacking import (
    FEATURES,
    StackingWeights,
    context_terms,
    feature_inputs,
    feature_matrix,
    quadratic_terms,
)

# Feature sets compared (the product's features only: computable from one model pass, the
# cached prior and the text). ``extra`` dump scores (bm25, match) are compared separately.
FEATURE_SETS: dict[str, tuple[str, ...]] = {
    # context-free: what typicality and length alone give (the bar the context must clear)
    "context-free": ("prior", "sum_prior", "log_length"),
    "prior+cond": ("mean_logprob", "prior"),
    "prior+cond+length": ("mean_logprob", "prior", "log_length"),
    "prior+cond+sums": ("mean_logprob", "prior", "sum_logprob", "sum_prior", "log_length"),
    "prior+cond+overlap": ("mean_logprob", "prior", "overlap_context", "overlap_query"),
    "all": tuple(FEATURES),
    "all-but-gaps": tuple(f for f in FEATURES if not f.endswith("_gap")),
}
L2_GRID = (0.0, 0.01, 0.1, 1.0, 10.0)
# Target tokens the model scores at most (config.max_target_len; the EOS counts as one).
MAX_TARGET_LEN = 60


@dataclass(frozen=True)
class GroupData:
    """One group's raw feature inputs and the real candidate's position."""

    inputs: dict[str, np.ndarray]
    extra: dict[str, np.ndarray]
    true_index: int


def read_dump(path: str | Path) -> list[list[dict[str, float]]]:
    """Per group, each candidate's scores from an ``--dump-scores`` JSONL file."""
    groups: dict[int, list[dict[str, float]]] = {}
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            try:
                row = json.loads(line)
                groups.setdefault(int(row["group"]), []).append(row["scores"])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"{path}:{n}: not a score dump row: {exc}") from None
    return [groups[i] for i in sorted(groups)]


def load_groups(data: str | Path, dump: str | Path, pipeline, limit=None) -> list[GroupData]:
    """Join a selection file's groups with their dumped scores into feature inputs.

    Raises:
        ValueError: the dump has fewer groups than asked, or lacks ``mean_logprob``/``prior``.
    """
    scores = read_dump(dump)
    groups = read_groups(data, limit=limit or len(scores))
    if len(scores) < len(groups):
        raise ValueError(f"{dump}: {len(scores)} groups, {data} has {len(groups)}")
    return [_group_data(g, s, pipeline) for g, s in zip(groups, scores, strict=False)]


def _group_data(group: Group, scores: list[dict[str, float]], pipeline) -> GroupData:
    for name in ("mean_logprob", "prior"):
        if name not in scores[0]:
            raise ValueError(f"score dump lacks {name!r} (run select with the model scorers)")
    ctx, q = context_terms(group.query, group.context, pipeline.index_terms)
    lengths = [min(len(pipeline.tokenize(a)) + 1, MAX_TARGET_LEN) for a in group.responses]
    inputs = feature_inputs(
        [s["mean_logprob"] for s in scores],
        [s["prior"] for s in scores],
        lengths,
        [pipeline.index_terms(a) for a in group.responses],
        ctx,
        q,
    )
    extra = {k: np.array([s[k] for s in scores]) for k in scores[0]}
    return GroupData(inputs, extra, group.true_index)


def design(groups: Sequence[GroupData], names: Sequence[str], extra: Sequence[str] = ()):
    """Per-group feature matrices (product features, then dumped ``extra`` scores)."""
    out = []
    for g in groups:
        x = feature_matrix(g.inputs, names)
        if extra:
            x = np.concatenate([x, np.stack([g.extra[e] for e in extra], axis=1)], axis=1)
        out.append(x)
    return out


def fit_conditional_logit(
    xs: Sequence[np.ndarray],
    true: Sequence[int],
    l2: float,
    iterations: int = 30,
    standardize: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Standardize (unless told not to), then maximize
    ``sum_g log softmax(X_g w)[true_g] - l2 |w|^2 / 2``.

    Returns:
        (mean, scale, w): the standardization and the weights on standardized features.
    """
    stacked = np.concatenate(xs)
    mean = stacked.mean(axis=0) if standardize else np.zeros(stacked.shape[1])
    scale = stacked.std(axis=0) if standardize else np.ones(stacked.shape[1])
    scale[scale == 0] = 1.0
    zs = [(x - mean) / scale for x in xs]
    d = stacked.shape[1]
    w = np.zeros(d)
    for _ in range(iterations):
        grad = -l2 * w
        hess = -l2 * np.eye(d) - 1e-9 * np.eye(d)
        for z, t in zip(zs, true, strict=True):
            s = z @ w
            p = np.exp(s - s.max())
            p /= p.sum()
            mu = p @ z
            grad += z[t] - mu
            hess -= (z * p[:, None]).T @ z - np.outer(mu, mu)
        step = np.linalg.solve(hess, grad)
        w = w - step
        if np.abs(step).max() < 1e-8:
            break
    return mean, scale, w


def evaluate(xs, true, mean, scale, w) -> dict[str, float]:
    """R10@1/2/5 and MRR (ties against the model) of the stacked score."""
    ranks = [rank_of_true(list(((x - mean) / scale) @ w), t) for x, t in zip(xs, true, strict=True)]
    return selection_metrics(ranks)


def _fit_one(xt, t_true, xv, v_true, l2: float, quadratic: bool) -> dict:
    """Fit on the train matrices, metrics on both sides; ``quadratic`` fits the pairwise
    products of the standardized features too (``alime.rerank.stacking.quadratic_terms``)."""
    if not quadratic:
        mean, scale, w = fit_conditional_logit(xt, t_true, l2)
        return {
            "train": evaluate(xt, t_true, mean, scale, w),
            "valid": evaluate(xv, v_true, mean, scale, w),
            "mean": mean.tolist(),
            "scale": scale.tolist(),
            "weights": w.tolist(),
        }
    stacked = np.concatenate(xt)
    mean, scale = stacked.mean(axis=0), stacked.std(axis=0)
    scale[scale == 0] = 1.0
    zt = [quadratic_terms((x - mean) / scale) for x in xt]
    zv = [quadratic_terms((x - mean) / scale) for x in xv]
    zero, one, w = fit_conditional_logit(zt, t_true, l2, standardize=False)
    return {
        "train": evaluate(zt, t_true, zero, one, w),
        "valid": evaluate(zv, v_true, zero, one, w),
        "mean": mean.tolist(),
        "scale": scale.tolist(),
        "weights": w.tolist(),
    }


def compare(train, valid, feature_sets=FEATURE_SETS, extras=((),), l2_grid=L2_GRID) -> list[dict]:
    """Fit every (feature set, extra scores, linear or quadratic, l2) on ``train``; metrics on
    both sides. Quadratic fits are tried for the product's features only (no extras)."""
    rows = []
    t_true = [g.true_index for g in train]
    v_true = [g.true_index for g in valid]
    for set_name, names in feature_sets.items():
        for extra in extras:
            xt, xv = design(train, names, extra), design(valid, names, extra)
            for quadratic in (False, True) if not extra else (False,):
                for l2 in l2_grid:
                    fit = _fit_one(xt, t_true, xv, v_true, l2, quadratic)
                    label = set_name + ("+" + "+".join(extra) if extra else "")
                    rows.append(
                        {
                            "features": label + (" (quadratic)" if quadratic else ""),
                            "names": [*names, *extra],
                            "l2": l2,
                            "quadratic": quadratic,
                            "product": not extra,
                            **fit,
                        }
                    )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """Compare feature sets; ``--write-model`` stores the best product one as stacking.json."""
    parser = argparse.ArgumentParser(prog="python -m research.stacking")
    parser.add_argument("--train-data", required=True)
    parser.add_argument("--train-scores", required=True)
    parser.add_argument("--valid-data", required=True)
    parser.add_argument("--valid-scores", required=True)
    parser.add_argument("--extras", default="bm25,match", help="dumped scores to also try")
    parser.add_argument("--write-model", action="append", default=[], metavar="DIR")
    parser.add_argument("--json", default=None, help="write every row here")
    args = parser.parse_args(argv)
    from alime.config import AppConfig
    from alime.text import TextPipeline

    pipeline = TextPipeline(AppConfig().text)
    try:
        train = load_groups(args.train_data, args.train_scores, pipeline)
        valid = load_groups(args.valid_data, args.valid_scores, pipeline)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    have = set(valid[0].extra) & set(train[0].extra)
    extras = [()] + [(e,) for e in args.extras.split(",") if e and e in have]
    rows = compare(train, valid, extras=extras)
    print("| features | l2 | train R10@1 | valid R10@1 | valid R10@5 | valid MRR |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r['features']} | {r['l2']} | {r['train']['r10@1']:.3f} | "
            f"{r['valid']['r10@1']:.3f} | {r['valid']['r10@5']:.3f} | {r['valid']['mrr']:.3f} |"
        )
    best = max(
        (r for r in rows if r["product"] and not r["features"].startswith("context-free")),
        key=lambda r: (r["valid"]["r10@1"], r["valid"]["mrr"], -len(r["names"]), r["l2"]),
    )
    print(f"chosen: {best['features']} l2 {best['l2']} valid {best['valid']}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    for model_dir in args.write_model:
        weights = StackingWeights(
            tuple(best["names"]),
            tuple(best["mean"]),
            tuple(best["scale"]),
            tuple(best["weights"]),
            {
                "fitted_on": f"{args.train_data} ({len(train)} groups, training dialogues)",
                "chosen_on": f"{args.valid_data} ({len(valid)} groups)",
                "feature_set": best["features"],
                "l2": best["l2"],
                "train": best["train"],
                "valid": best["valid"],
            },
            best["quadratic"],
        )
        print(f"wrote {weights.save(model_dir)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
