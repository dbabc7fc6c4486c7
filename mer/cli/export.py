"""``mer export RUN_DIR --format onnx``: a run's fusion head as a standalone file
(:mod:`mer.train.export`); a run that cannot be exported is one message with exit status 2."""

from __future__ import annotations

import click


@click.command("export")
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True))
@click.option("--format", "fmt", type=click.Choice(["onnx"]), default="onnx", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Output file (default: RUN_DIR/model.onnx).")
def export_cmd(run_dir: str, fmt: str, out: str | None) -> None:
    """Export RUN_DIR's head (standardisation baked in, dynamic batch) with its labels and encoder keys.

    Inputs: x_<modality> (the cached pooled features, as stored) and present_<modality> (bool);
    output: probabilities. The file's metadata lists them with their dims.
    """
    from mer.train.export import export_onnx, read_metadata

    path = export_onnx(run_dir, out)
    meta = read_metadata(path)
    click.echo(f"wrote {path}")
    click.echo(f"labels: {meta['labels']}")
    for spec in meta["inputs"]:
        click.echo(f"  input {spec['name']} {spec['dims']} {spec['dtype']}: {spec['holds']}")
    click.echo(f"  output probabilities {meta['outputs'][0]['dims']}")


COMMANDS = (export_cmd,)
