"""``mer finetune``: end-to-end fine-tuning of one text or speech encoder.

Re-running the same command after a kill resumes from ``<run>/checkpoint.pt``; the default
run folder is derived from the config, the manifest and the base model, so the same
command finds its own unfinished run again. Expected problems print one message and exit
with status 2, like the other commands (:mod:`mer.cli.errors`).
"""

from __future__ import annotations

from pathlib import Path

import click

from mer.cli.options import load


@click.command("finetune")
@click.option("-c", "--config", "config_path", required=True, type=click.Path(dir_okay=False),
              help="Experiment config (YAML) with a 'finetune' section.")
@click.option("--modality", default="", help="Key of 'features' to fine-tune (an hf-text or hf-audio encoder); "
                                              "default: finetune.modality, else the only such key.")
@click.option("--run-dir", type=click.Path(file_okay=False), default=None,
              help="Run folder (default: <output>/<corpus>/finetune-<modality>-<fingerprint>); an unfinished run "
                   "in it is resumed.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config field, e.g. --set finetune.lr_encoder=3e-5 (repeatable).")
@click.option("--device", default=None, help="auto | cpu | cuda | cuda:1 (default: finetune.device).")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def finetune_cmd(config_path: str, modality: str, run_dir: str | None, overrides: tuple[str, ...], device: str | None,
                 quiet: bool) -> None:
    """Fine-tune the top layers of a text or speech encoder end to end on raw inputs.

    Writes the fine-tuned encoder to RUN/encoder/ (for `mer extract --set
    features.<modality>.model=RUN/encoder`) and the outputs of a `mer train` run, so that
    `mer evaluate RUN` works on it.
    """
    from mer.finetune import finetune_experiment

    overrides = tuple(overrides)
    config = load(config_path, overrides + ((f"finetune.device={device}",) if device else ()))
    result = finetune_experiment(config, Path(run_dir) if run_dir else None, modality=modality, overrides=overrides,
                                 progress=not quiet, log=click.echo)
    click.echo(f"run: {result.run_dir}")
    click.echo(f"encoder: {result.encoder_dir}")


COMMANDS = (finetune_cmd,)
