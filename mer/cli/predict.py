"""``mer predict RUN_DIR INPUT...``: score new files with a trained run (:mod:`mer.predict`).

Problems the user can fix (an unknown input, an encoder that is not the run's or cannot be
loaded here, a finetune run) raise and become one message with exit status 2
(:mod:`mer.cli.errors`); a sample whose file is bad is a per-sample failure, shown in the
output's ``failures`` column, and the sample is scored with the modalities it has.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from mer.cli.options import cli_logging

#: columns of the printed table (the file written by --out has every class probability)
SHOWN = ("id", "prediction", "probability", "modalities", "failures")


@click.command("predict")
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True))
@click.argument("inputs", nargs=-1, type=click.Path())
@click.option("--text", "texts", multiple=True, metavar="TEXT",
              help="A transcript (repeatable): one per media INPUT in order, or a text-only sample, or the text of "
                   "the --audio/--video sample.")
@click.option("--audio", type=click.Path(dir_okay=False, exists=True), default=None,
              help="The audio of ONE multimodal sample (with --video and/or --text).")
@click.option("--video", type=click.Path(dir_okay=False, exists=True), default=None,
              help="The video of ONE multimodal sample (its audio track feeds the run's audio encoders).")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Write every class probability to this .csv or .json file.")
@click.option("--cache", type=click.Path(file_okay=False), default=None,
              help="Prediction cache root (default: RUN_DIR/predict-cache); content-addressed, reused across calls.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Change the run's features.*/extract.* options, e.g. where a model lives "
                   "(--set features.text.model=PATH); the encoder key must stay the run's.")
@click.option("--device", default=None, help="Where the encoders run (default: the run's extract.device).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def predict_cmd(run_dir: str, inputs: tuple[str, ...], texts: tuple[str, ...], audio: str | None,
                video: str | None, out: str | None, cache: str | None, overrides: tuple[str, ...],
                device: str | None, no_progress: bool) -> None:
    """Score audio/video files, folders, manifests (CSV/JSONL) or --text with the run in RUN_DIR.

    Runs exactly the run's encoders (read from its model.pt), caches what it extracts (a second
    call on the same files extracts nothing), applies the head and prints id, top label,
    probability and the modalities used.

    \b
    mer predict runs/demo/late-text+audio a.wav b.wav --text "first" --text "second"
    mer predict RUN --text "I can't believe it" --audio clip.wav
    mer predict RUN new_corpus.csv --out predictions.json
    """
    from mer.predict import load_run

    if out and Path(out).suffix.lower() not in (".csv", ".json"):
        raise click.BadParameter("must end in .csv or .json", param_hint="--out")
    run = load_run(run_dir, log=lambda line: click.echo(line, err=True))
    with cli_logging():
        result = run.predict_detailed(list(inputs), texts=texts, audio=audio, video=video, cache=cache,
                                      overrides=overrides, device=device, progress=not no_progress)
    table = result.table
    extracted = {m: r.samples_extracted for m, r in result.report.modalities.items()}
    click.echo(f"{len(table)} sample(s); newly extracted per modality: {extracted} (the rest were already in the "
               f"prediction cache {result.cache})", err=True)
    failed = int((table["failures"] != "").sum())
    if failed:
        click.echo(f"{failed} sample(s) had failures (see the 'failures' column): scored with the modalities "
                   "they have", err=True)
    shown = table[[c for c in SHOWN if c in table.columns and (c != "failures" or failed)]].copy()
    shown["probability"] = shown["probability"].map(lambda p: f"{p:.4f}")
    click.echo(shown.to_string(index=False))
    if out:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix.lower() == ".json":
            path.write_text(json.dumps({"run": str(run.path), "classes": run.classes,
                                        "rows": table.to_dict("records")}, indent=2) + "\n", encoding="utf-8")
        else:
            table.to_csv(path, index=False)
        click.echo(f"wrote {path}", err=True)


COMMANDS = (predict_cmd,)
