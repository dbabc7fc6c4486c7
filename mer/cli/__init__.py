"""The ``mer`` command line: one module per command group, assembled here.

========================  =============================================
``mer manifest``          :mod:`mer.cli.manifest`
``mer extract``           :mod:`mer.cli.extract`
``mer cache ls|verify|gc`` :mod:`mer.cli.cache`
``mer import-csd``        :mod:`mer.cli.import_csd`
``mer train|evaluate|ablate`` :mod:`mer.cli.train`
``mer compare``           :mod:`mer.cli.compare`
``mer finetune``          :mod:`mer.cli.finetune`
``mer predict``           :mod:`mer.cli.predict`
``mer export``            :mod:`mer.cli.export`
``mer demo``              :mod:`mer.cli.demo`
``mer doctor``            :mod:`mer.cli.doctor`
========================  =============================================

Commands raise; :mod:`mer.cli.errors` maps the user's problems (bad config, bad manifest,
missing cache, ...) to one message and an exit code, so no command prints its own error.
"""

from __future__ import annotations

import sys

import click

from mer import __version__
from mer.cli import cache, compare, demo, doctor, export, extract, finetune, import_csd, manifest, predict, train
from mer.cli.errors import exit_code


class MerGroup(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except Exception as exc:  # noqa: BLE001 - re-raised unless the table knows it
            code = exit_code(exc)
            if code is None:
                raise
            click.echo(f"error: {exc}", err=True)
            sys.exit(code)


@click.group(cls=MerGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mer")
def cli() -> None:
    """mer: multimodal emotion recognition.

    Extract frozen features once into a content-addressed HDF5 cache, then train
    and compare fusion heads over them in seconds.
    """


for _module in (manifest, demo, doctor, train, compare, predict, export, finetune, extract, cache, import_csd):
    for _command in _module.COMMANDS:
        cli.add_command(_command)


def main() -> None:
    cli(prog_name="mer")


if __name__ == "__main__":
    main()
