"""``alime quantize``: parse flags, call ``alime.seq2seq.quantized.quantize_model_dir``."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``quantize`` subcommand to an ``argparse`` subparsers object."""
    p = subparsers.add_parser(
        "quantize",
        help="int8-quantize a trained model directory for serving",
        description="Post-training int8 quantization (symmetric, one scale per output channel) of "
        "every weight matrix; writes a model directory that loads like any other.",
    )
    p.add_argument("model_dir", help="fp32 model directory written by 'alime train'")
    p.add_argument("--out", required=True, help="int8 model directory to write")
    p.set_defaults(func=run)
    return p


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def run(args: argparse.Namespace) -> int:
    """Run the ``quantize`` subcommand; returns the exit status."""
    from alime.seq2seq.model_dir import WEIGHTS_FILE
    from alime.seq2seq.quantized import quantize_model_dir

    marker = quantize_model_dir(args.model_dir, args.out)
    int8 = sum(t["dtype"] == "int8" for t in marker["tensors"])
    src = Path(args.model_dir) / WEIGHTS_FILE
    print(
        f"int8 model written to {args.out}: {int8} of {len(marker['tensors'])} tensors int8, "
        f"{_size(Path(args.out)):,} bytes (fp32 weights {src.stat().st_size:,} bytes)"
    )
    return 0
