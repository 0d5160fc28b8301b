"""What the ``alime`` subcommands share: the user-error type, the configuration of a parsed
command line and a flag type. ``alime.cli`` and every ``alime.commands`` module import it, so
no subcommand imports ``alime.cli`` back (the registration there is static)."""

from __future__ import annotations

import argparse

from alime.config import AppConfig, load_config


class CLIError(Exception):
    """A user-facing error: printed without a traceback, exit status 2."""


def config_of(args: argparse.Namespace) -> AppConfig:
    """The configuration named by the global ``--config`` flag (the defaults without one)."""
    return load_config(args.config)


def positive_int(text: str) -> int:
    """An ``argparse`` type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value
