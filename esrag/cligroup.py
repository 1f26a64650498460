"""The class of every ``esrag`` command group: a subcommand's ``--help`` without pydantic.

Typer converts each parameter value through a pydantic ``TypeAdapter`` that it builds the
first time the parameter is processed, and skips that only for a bool flag that already
holds a bool. A group's own ``--help`` flag has no default, so ``esrag job --help``
processed the group's flag with the value None, and that alone imported pydantic (about
0.3 s of CPU on a 2-core machine, more than the rest of the command). With the default
False the flag holds a bool and no adapter is built; the help printed is the same.
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperGroup


class QuickHelpGroup(TyperGroup):
    """:class:`TyperGroup` whose ``--help`` flag defaults to False instead of None."""

    def get_help_option(self, ctx: typer.Context) -> Any:
        option = super().get_help_option(ctx)
        if option is not None and option.default is None:
            option.default = False
        return option
