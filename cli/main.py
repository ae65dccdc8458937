"""The ``moohead`` command group and its error policy.

Heavy imports (torch, pymoo, fvcore) happen inside commands, so ``moohead --help`` is instant.
User errors print one line and exit with 2; there is never a traceback for bad input.
"""

from __future__ import annotations

import sys

import click

from moohead.cli.bench import bench
from moohead.cli.evolve import evolve
from moohead.cli.export import export
from moohead.cli.front import front
from moohead.cli.pick import pick
from moohead.cli.predict import predict
from moohead.cli.refine import refine
from moohead.cli.serve import serve
from moohead.errors import MooheadError

EXIT_USAGE = 2


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="moohead")
def cli() -> None:
    """Search, pick and ship classification heads for transformer encoders."""


cli.add_command(evolve)
cli.add_command(front)
cli.add_command(refine)
cli.add_command(pick)
cli.add_command(export)
cli.add_command(bench)
cli.add_command(predict)
cli.add_command(serve)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run a command, turning input errors into one line and exit code 2."""
    try:
        cli.main(args=argv, prog_name="moohead", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        ctx = getattr(exc, "ctx", None)  # usage errors know their command
        hint = f" (see {ctx.command_path} --help)" if ctx else ""
        click.echo(f"error: {exc.format_message()}{hint}", err=True)
        sys.exit(EXIT_USAGE)
    except MooheadError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    except (KeyboardInterrupt, click.Abort):
        click.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
