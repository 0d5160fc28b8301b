"""Hyper-parameter search for ``alime tune``: random search or successive halving.

The search is independent of training: it calls ``run_trial(params, epochs, out_dir, resume)``
(``alime tune`` passes one that runs ``alime train``'s :func:`alime.seq2seq.training.train`) and
reads back the best validation loss. Parameters are keys of the config's ``[train]`` section, so
the best trial is written as a TOML file that ``alime --config FILE train`` accepts.

Successive halving (Jamieson & Talwalkar, 2016): all trials train ``min_epochs`` epochs; the best
``1/eta`` of them continue (resumed from their checkpoint) for ``eta`` times as many epochs, and
so on up to ``max_epochs``. Random search trains every trial ``max_epochs`` epochs.
"""

from __future__ import annotations

import json
import math
import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from alime.config import TrainingConfig

METHODS = ("random", "halving")
TRAIN_KEYS = tuple(TrainingConfig.__dataclass_fields__)

# run_trial(params, epochs, out_dir, resume) -> best validation loss
TrialRunner = Callable[[dict, int, Path, bool], float]


@dataclass(frozen=True)
class Param:
    """One dimension of the search space: a ``[train]`` key drawn from a range or a list.

    Attributes:
        name: the ``[train]`` key.
        low: smallest value of a range.
        high: largest value of a range.
        log: draw the range log-uniformly (learning rates).
        choices: the values to pick from (instead of a range).
    """

    name: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple = ()

    def __post_init__(self) -> None:
        if self.name not in TRAIN_KEYS:
            raise ValueError(f"unknown parameter {self.name!r}; valid: {', '.join(TRAIN_KEYS)}")
        if self.choices:
            object.__setattr__(self, "choices", tuple(self.choices))
            return
        if self.low is None or self.high is None or not self.low < self.high:
            raise ValueError(f"{self.name}: give choices, or low < high")
        if self.log and self.low <= 0:
            raise ValueError(f"{self.name}: a log range needs low > 0")

    def sample(self, rng: np.random.Generator):
        """One value (an int for integer keys such as ``hidden_dim``)."""
        if self.choices:
            return self.choices[int(rng.integers(len(self.choices)))]
        if self.log:
            value = math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        else:
            value = rng.uniform(self.low, self.high)
        if isinstance(getattr(TrainingConfig(), self.name), int):
            return int(round(value))
        return float(value)


DEFAULT_SPACE: tuple[Param, ...] = (
    Param("learning_rate", 1e-4, 1e-2, log=True),
    Param("hidden_dim", choices=(64, 128, 256)),
    Param("embed_dim", choices=(64, 128)),
    Param("dropout", 0.0, 0.3),
    Param("avg_period", choices=(4, 8, 16)),
)


def load_space(path: str | Path) -> tuple[Param, ...]:
    """A search space from TOML: one table per ``[train]`` key under ``[space]``.

    Example::

        [space.learning_rate]
        low = 1e-4
        high = 1e-2
        log = true

        [space.hidden_dim]
        choices = [64, 128]

    Raises:
        ValueError: ``FILE: problem`` for bad TOML, unknown keys or bad ranges.
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"search space file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: invalid TOML: {exc}") from None
    tables = data.get("space")
    if set(data) != {"space"} or not isinstance(tables, dict) or not tables:
        raise ValueError(f"{path}: expected only [space.KEY] tables")
    params = []
    for name, spec in tables.items():
        if not isinstance(spec, dict) or set(spec) - {"low", "high", "log", "choices"}:
            raise ValueError(f"{path}: [space.{name}] takes low, high, log or choices")
        try:
            params.append(Param(name, **spec))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}: {exc}") from None
    return tuple(params)


@dataclass
class Trial:
    """One configuration tried.

    Attributes:
        index: 0-based trial number.
        params: the sampled ``[train]`` values.
        epochs: epochs trained so far.
        val_loss: best validation loss so far (None before its first run).
        rung: successive-halving round reached (0 for random search).
        seconds: training wall time so far.
        out_dir: its model directory.
    """

    index: int
    params: dict
    out_dir: str
    epochs: int = 0
    val_loss: float | None = None
    rung: int = 0
    seconds: float = 0.0
    history: list = field(default_factory=list)


@dataclass(frozen=True)
class Budget:
    """How much to search: ``trials`` configurations, stopping early after ``minutes`` (0: no
    time limit; a running trial finishes)."""

    trials: int = 8
    minutes: float = 0.0

    def __post_init__(self) -> None:
        if self.trials < 1 or self.minutes < 0:
            raise ValueError("trials must be >= 1 and minutes >= 0")


def search(
    run_trial: TrialRunner,
    workdir: str | Path,
    space: Sequence[Param] = DEFAULT_SPACE,
    method: str = "random",
    budget: Budget = Budget(),
    min_epochs: int = 1,
    max_epochs: int = 4,
    eta: int = 2,
    seed: int = 0,
) -> list[Trial]:
    """Run the search and return every trial (best validation loss first for finished ones).

    Args:
        run_trial: trains one configuration (see ``TrialRunner``).
        workdir: trials go to ``workdir/trial-NN``.
        space: the parameters searched.
        method: ``random`` or ``halving``.
        budget: trials and minutes.
        min_epochs: epochs of the first halving round.
        max_epochs: epochs of a random-search trial; the halving rounds' ceiling.
        eta: halving keeps the best 1/eta and multiplies the epochs by eta.
        seed: draws of the configurations.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    if not 1 <= min_epochs <= max_epochs or eta < 2:
        raise ValueError("need 1 <= min_epochs <= max_epochs and eta >= 2")
    workdir = Path(workdir)
    rng = np.random.default_rng(seed)
    trials = [
        Trial(i, {p.name: p.sample(rng) for p in space}, str(workdir / f"trial-{i:02d}"))
        for i in range(budget.trials)
    ]
    started = time.monotonic()

    def out_of_time() -> bool:
        return bool(budget.minutes) and time.monotonic() - started > 60 * budget.minutes

    def run(trial: Trial, epochs: int, rung: int) -> None:
        began = time.monotonic()
        loss = run_trial(trial.params, epochs, Path(trial.out_dir), trial.epochs > 0)
        trial.seconds += time.monotonic() - began
        trial.epochs, trial.val_loss, trial.rung = epochs, float(loss), rung
        trial.history.append([epochs, float(loss)])

    if method == "random":
        for trial in trials:
            if out_of_time():
                break
            run(trial, max_epochs, 0)
        return _ranked(trials)
    alive, epochs, rung = list(trials), min_epochs, 0
    while alive and not out_of_time():
        for trial in alive:
            if out_of_time():
                break
            run(trial, epochs, rung)
        done = sorted((t for t in alive if t.epochs == epochs), key=lambda t: t.val_loss)
        if epochs >= max_epochs or len(done) <= 1:
            break
        alive = done[: max(1, len(done) // eta)]
        epochs, rung = min(max_epochs, epochs * eta), rung + 1
    return _ranked(trials)


def _ranked(trials: list[Trial]) -> list[Trial]:
    """Finished trials by (deepest rung first, then validation loss), then the unrun ones."""
    run = [t for t in trials if t.val_loss is not None]
    return sorted(run, key=lambda t: (-t.rung, t.val_loss)) + [
        t for t in trials if t.val_loss is None
    ]


def best_config_toml(trial: Trial, base: TrainingConfig) -> str:
    """The ``[train]`` section of ``base`` with the trial's values (and its epochs)."""
    values = {**asdict(base), **trial.params, "epochs": trial.epochs}
    lines = [
        f"# alime tune: trial {trial.index}, best validation loss {trial.val_loss:.4f}",
        "[train]",
    ]
    for key in TRAIN_KEYS:
        value = values[key]
        lines.append(f"{key} = {value!r}" if isinstance(value, float) else f"{key} = {value}")
    return "\n".join(lines) + "\n"


def table(trials: Sequence[Trial], space: Sequence[Param]) -> str:
    """A Markdown table of the trials, in :func:`search`'s order."""
    names = [p.name for p in space]
    head = ["trial", *names, "epochs", "rung", "val loss", "seconds"]
    rows = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for t in trials:
        cells = [str(t.index)]
        cells += [
            f"{t.params[n]:.3g}" if isinstance(t.params[n], float) else str(t.params[n])
            for n in names
        ]
        loss = "not run" if t.val_loss is None else f"{t.val_loss:.4f}"
        cells += [str(t.epochs), str(t.rung), loss, f"{t.seconds:.0f}"]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def plot(trials: Sequence[Trial], path: str | Path) -> None:
    """Validation loss against epochs for every trial (one line per trial)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for t in trials:
        if t.history:
            epochs, losses = zip(*t.history, strict=True)
            ax.plot(epochs, losses, marker="o", label=f"trial {t.index}")
    ax.set_xlabel("epochs")
    ax.set_ylabel("best validation loss (token NLL)")
    ax.set_title("alime tune")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(
    trials: Sequence[Trial], space: Sequence[Param], base: TrainingConfig, workdir: str | Path
) -> dict[str, Path]:
    """``trials.json``, ``trials.md``, ``trials.png`` and ``best.toml`` in ``workdir``.

    Raises:
        ValueError: no trial ran (the budget was too small).
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if not trials or trials[0].val_loss is None:
        raise ValueError("no trial finished within the budget")
    paths = {
        "json": workdir / "trials.json",
        "table": workdir / "trials.md",
        "plot": workdir / "trials.png",
        "best": workdir / "best.toml",
    }
    space_data = [asdict(p) for p in space]
    paths["json"].write_text(
        json.dumps({"space": space_data, "trials": [asdict(t) for t in trials]}, indent=1),
        encoding="utf-8",
    )
    paths["table"].write_text(table(trials, space), encoding="utf-8")
    plot(trials, paths["plot"])
    paths["best"].write_text(best_config_toml(trials[0], base), encoding="utf-8")
    return paths
