"""The `arenapref` command line: it parses, calls the library (arenapref/workflows.py) and prints.

One error boundary for every command (`ArenaprefGroup`): a failure the user can fix (`ArenaprefError`) prints one
line naming what to fix and exits 2; anything else is a bug in arenapref and shows its traceback (exit 1).

Commands live by group: data.py (data import/validate/stats/overlap), modeling.py (cv, train, predict, estimate,
merge), tuning.py (tune), evaluation.py (grade, calibrate, ensemble, rank, report), serving.py (serve), and demo.py (the main job).
"""

from __future__ import annotations

import typer
from typer.core import TyperGroup

from arenapref._version import __version__
from arenapref.cli.common import error_line
from arenapref.errors import ArenaprefError


class ArenaprefGroup(TyperGroup):
    """The error boundary: ArenaprefError -> one line on stderr and exit status 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ArenaprefError as e:
            error_line(str(e))
            raise typer.Exit(2) from None


app = typer.Typer(
    cls=ArenaprefGroup,
    help="Predict which of two chatbot answers people prefer: P(A wins), P(B wins), P(tie).\n\n"
    "Typical run: `arenapref cv train.csv`, `arenapref train train.csv -o model/`, "
    "`arenapref predict model/ test.csv -o submission.csv`.",
    no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"arenapref {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                                 help="Print the version and exit.")) -> None:
    pass


from arenapref.cli import data, demo, evaluation, modeling, serving, tuning  # noqa: E402  (commands register on `app`)

app.add_typer(data.app, name="data")
modeling.register(app)
tuning.register(app)
evaluation.register(app)
serving.register(app)
demo.register(app)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
