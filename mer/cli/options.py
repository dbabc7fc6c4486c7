"""What every command shares: the ``--config/--set`` options, config loading, logging, seeds."""

from __future__ import annotations

import contextlib
import logging
import sys
from importlib import resources
from pathlib import Path
from typing import Iterator

import click

from mer.config import ExperimentConfig, load_config


def config_option(f):
    """``-c/--config`` (required) and ``--set KEY=VALUE`` (repeatable), as ``config_path``/``overrides``."""
    f = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                     help="Override a config field, e.g. --set train.lr=3e-4 (repeatable).")(f)
    return click.option("-c", "--config", "config_path", required=True, type=click.Path(dir_okay=False),
                        help="Experiment config (YAML), e.g. configs/demo.yaml.")(f)


def load(config_path: str | Path, overrides: tuple[str, ...] | list[str] = ()) -> ExperimentConfig:
    """The config, with the loader's notes (e.g. a switched encoder's dropped keys) printed."""
    config = load_config(config_path, overrides)
    for note in config.notes:
        click.echo(f"note: {note}", err=True)
    return config


def packaged_config(name: str) -> Path:
    """Path of a config shipped with the package (``configs/<name>.yaml``)."""
    return Path(str(resources.files("mer.configs").joinpath(f"{name}.yaml")))


def parse_seeds(text: str | None, option: str = "--seeds") -> list[int] | None:
    if not text:
        return None
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {text!r}", param_hint=option) from None


class _TqdmHandler(logging.Handler):
    """Log lines that do not break a running progress bar (printed above it, on stderr)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging's own error path (prints the problem)
            self.handleError(record)


@contextlib.contextmanager
def cli_logging(level: int = logging.INFO) -> Iterator[None]:
    """``mer.*`` log records on stderr for the duration of a command."""
    logger = logging.getLogger("mer")
    handler = _TqdmHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
