"""The ``benchmark`` command line.

Sub-commands defined here: run, report, list, demo, bench. Area-specific sub-commands (``data``,
``train``, ``export``, ...) live in :mod:`benchmark.commands`; every module there that exposes
``commands: list[click.Command]`` is added automatically.

Any :class:`~benchmark.core.errors.UserError` ends the command with one line ``error: ...`` on stderr and
exit status 2 (no traceback).
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

import click

from benchmark import __version__
from benchmark.core.errors import UserError

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class _Group(click.Group):
    """A click group that turns UserError into one clear line and exit status 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except UserError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)


@click.group(cls=_Group, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, prog_name="partbench")
def cli() -> None:
    """partbench: benchmark unsupervised object-part discovery.

    \b
    Quick start:
      benchmark demo                                   # every method on the synthetic dataset
      benchmark list                                   # what is registered, and usable here
      benchmark run --method kmeans --dataset cub --data-root /data/CUB_200_2011
      benchmark report runs/ --format markdown
    """


def _add_area_commands() -> None:
    import benchmark.commands as package

    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        for command in getattr(module, "commands", []):
            cli.add_command(command)


_add_area_commands()


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="benchmark", standalone_mode=True)
    except UserError as exc:  # raised outside a command's invoke (e.g. while parsing)
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
