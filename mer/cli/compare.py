"""``mer compare RUN_A RUN_B``: the paired test between two results (:mod:`mer.compare`)."""

from __future__ import annotations

import json

import click


@click.command("compare")
@click.argument("run_a", type=click.Path(file_okay=False, exists=True))
@click.argument("run_b", type=click.Path(file_okay=False, exists=True))
@click.option("--split", type=click.Choice(["test", "val", "train"]), default="test", show_default=True)
@click.option("--metric", type=click.Choice(["uar", "macro_f1", "weighted_f1", "accuracy"]), default="uar",
              show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap/permutation resamples.")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
def compare_cmd(run_a: str, run_b: str, split: str, metric: str, seed: int, as_json: bool) -> None:
    """Is A better than B beyond noise? Paired over seeds/folds, or over test samples for single runs."""
    from mer.compare import compare, format_comparison

    result = compare(run_a, run_b, split, metric, seed)
    click.echo(json.dumps(result, indent=2) if as_json else format_comparison(result))


COMMANDS = (compare_cmd,)
