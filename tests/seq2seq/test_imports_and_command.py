import argparse
import subprocess
import sys
from pathlib import Path

from alime.commands import train as train_command

ROOT = Path(__file__).resolve().parents[2]


def test_importing_the_packages_loads_no_tensorflow():
    code = (
        "import sys, alime, alime.seq2seq, alime.rerank, alime.commands.train, "
        "alime.rerank.scorers, alime.seq2seq.generator, alime.seq2seq.data; "
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


def test_train_subcommand_parses_its_flags():
    parser = argparse.ArgumentParser(prog="alime")
    train_command.register(parser.add_subparsers())
    args = parser.parse_args(
        [
            "train",
            "--data",
            "a.txt",
            "--data",
            "b.txt",
            "--out",
            "m",
            "--epochs",
            "2",
            "--batch-size",
            "8",
            "--embed-dim",
            "16",
            "--hidden-dim",
            "32",
            "--vocab-size",
            "500",
            "--seed",
            "1",
            "--resume",
            "--patience",
            "4",
            "--valid",
            "v.txt",
        ]
    )
    assert args.func is train_command.run
    assert (args.data, args.valid, args.out) == (["a.txt", "b.txt"], ["v.txt"], "m")
    assert (args.epochs, args.batch_size, args.embed_dim, args.hidden_dim) == (2, 8, 16, 32)
    assert (args.vocab_size, args.seed, args.resume, args.patience) == (500, 1, True, 4)
