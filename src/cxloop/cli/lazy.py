"""Commands whose modules load only when they run.

Every `cxloop` invocation builds the command tree before it parses a word, so a module
imported for the tree is paid by every command: the analytics commands alone pull in the
SQL translator and the funnel engine. The root group therefore knows most commands by
name and one line of help, and imports a command's module when that command is invoked
(or when its own `--help` is asked for). `cxloop --help` lists them from the names and
lines alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from difflib import get_close_matches
from typing import Any

import typer
from typer import _click as click  # typer carries its own click; its groups are of this one
from typer.core import TyperCommand, TyperGroup


@dataclass(frozen=True)
class LazyCommand:
    """A command known by its name and help line; ``load`` gives its Typer app (a group) or
    its function (a single command)."""

    name: str
    help: str
    load: Callable[[], typer.Typer | Callable[..., Any]]

    def build(self) -> click.Command:
        loaded = self.load()
        command: click.Command
        if isinstance(loaded, typer.Typer):
            command = typer.main.get_group(loaded)
        else:
            single = typer.Typer(add_completion=False)  # as the root: no completion options
            single.command(self.name)(loaded)
            command = typer.main.get_command(single)
        command.name = self.name
        return command

    def placeholder(self) -> click.Command:
        """What the root's help lists: the name and its line, nothing imported."""
        return TyperCommand(self.name, help=self.help, short_help=self.help)


class LazyGroup(TyperGroup):
    """The root group: the commands defined in it and those of ``lazy``, listed in
    ``order`` (names it leaves out follow)."""

    lazy: dict[str, LazyCommand] = {}
    order: list[str] = []

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = dict.fromkeys([*super().list_commands(ctx), *self.lazy])
        return [*(n for n in self.order if n in names), *(n for n in names if n not in self.order)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = super().get_command(ctx, cmd_name)
        if found is None and cmd_name in self.lazy:
            return self.lazy[cmd_name].placeholder()
        return found

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        if args:
            self.load(args[0])
        try:
            return super().resolve_command(ctx, args)
        except click.exceptions.UsageError as error:
            # Typer suggests only among loaded commands; a typo deserves them all.
            matches = get_close_matches(args[0], self.list_commands(ctx)) if args else []
            if matches and "Did you mean" not in error.message:
                names = ", ".join(repr(m) for m in matches)
                error.message = f"{error.message.rstrip('.')}. Did you mean {names}?"
            raise

    def load(self, name: str) -> click.Command | None:
        """The real command (imported on first use), or None for an unknown name."""
        if name not in self.commands and name in self.lazy:
            self.add_command(self.lazy[name].build(), name)
        return self.commands.get(name)
