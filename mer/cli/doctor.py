"""``mer doctor``: versions, devices and known environment problems."""

from __future__ import annotations

import click


@click.command("doctor")
def doctor_cmd() -> None:
    """Print versions, devices and known environment problems (e.g. a broken torchaudio)."""
    from mer.features.environment import doctor_report

    click.echo(doctor_report())


COMMANDS = (doctor_cmd,)
