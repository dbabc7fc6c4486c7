"""``mer manifest``: build and validate a corpus's manifest."""

from __future__ import annotations

import click

from mer.cli.options import config_option, load


def source_column(encoder_options) -> str:
    """The manifest column an encoder reads (a sample has the modality when it is non-empty)."""
    from mer.features.registry import build_encoder

    return build_encoder(encoder_options).columns[0]


@click.command("manifest")
@config_option
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Where to write the manifest CSV (default: <cache root>/<corpus>/manifest.csv).")
def manifest_cmd(config_path: str, overrides: tuple[str, ...], out: str | None) -> None:
    """Build and validate a corpus's manifest and print its summary."""
    from mer.pipeline.corpus import prepare_manifest

    config = load(config_path, overrides)
    result, path = prepare_manifest(config.pipeline, out)
    modalities = {name: source_column(opts) for name, opts in config.features.items()}
    click.echo(result.manifest.summary(modalities or None))
    click.echo(result.skipped_summary())
    for note in result.notes:
        click.echo(f"note: {note}")
    click.echo(f"wrote {path} (+ {path.name}.json, skipped.csv)")


COMMANDS = (manifest_cmd,)
