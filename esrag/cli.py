"""The ``esrag`` command: core commands here, the rest registered by the other packages.

Packages add their commands through the ``esrag.commands`` entry point group (each entry
is a ``register(app)`` callable), so the core never imports ingest, workers or query.
"""

from __future__ import annotations

import json
import sys
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Annotated, Any

import typer

from esrag.cligroup import QuickHelpGroup
from esrag.clisettings import load_settings
from esrag.errors import EsragError, ServiceUnavailable

if TYPE_CHECKING:
    from esrag.settings import Settings

app = typer.Typer(
    name="esrag",
    cls=QuickHelpGroup,  # `esrag CMD --help` without pydantic (see esrag/cligroup.py)
    help="Retrieval-augmented generation over large document collections on Elasticsearch.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain Click help and usage errors; rich (~0.2 s to import) loads only for bars
)


def echo_err(message: str) -> None:
    """Print one line to stderr."""
    typer.echo(message, err=True)


@app.command()
def up(
    nodes: Annotated[int | None, typer.Option(help="Elasticsearch nodes to run locally")] = None,
    heap: Annotated[str | None, typer.Option(help="heap per node, e.g. 512m or 1g")] = None,
    worker: Annotated[bool, typer.Option(help="also start a background ingest worker")] = False,
) -> None:
    """Start the local Elasticsearch and Redis (fetched and cached on first use)."""
    from esrag import localnode, localredis

    settings = load_settings(es_nodes=nodes, es_heap=heap)
    for line in localnode.start_nodes(settings):
        typer.echo(settings.redact(line))
    typer.echo(settings.redact(localredis.start(settings)))
    if worker:
        from esrag import services

        typer.echo(settings.redact(services.start_background_worker(settings)))


@app.command()
def down() -> None:
    """Stop what `esrag up` started; data stays on disk for the next `up`."""
    settings = load_settings()
    from esrag import localnode, localredis, services

    typer.echo(services.stop_background_worker(settings))
    for line in localnode.stop_nodes(settings):
        typer.echo(settings.redact(line))
    typer.echo(settings.redact(localredis.stop(settings)))


@app.command()
def status(as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """Report Elasticsearch health and version, Redis, and workers."""
    from esrag import services

    settings = load_settings()
    report = services.status_report(settings)
    if as_json:
        typer.echo(settings.redact(json.dumps(report, indent=2)))
    else:
        _print_status(report, settings)
    if not (report["elasticsearch"]["up"] and report["redis"]["up"]):
        raise typer.Exit(1)


def _print_status(report: dict[str, Any], settings: Settings) -> None:
    def echo(line: str) -> None:
        typer.echo(settings.redact(line))

    es = report["elasticsearch"]
    if es["up"]:
        echo(
            f"elasticsearch: {es['status']} at {es['url']} (version {es['version']}, "
            f"{es['nodes']} node(s))"
        )
    else:
        echo(f"elasticsearch: down at {es['url']}: {es['error']}")
    rd = report["redis"]
    echo(f"redis: {'up' if rd['up'] else 'down'} at {rd['url']}")
    echo(f"workers: {len(report['workers'])} online")
    for w in report["workers"]:
        queues = ",".join(w.get("queues") or []) or "-"
        echo(f"  {w['name']} concurrency={w.get('concurrency')} queues={queues}")


keys_app = typer.Typer(help="Scoped API keys of the HTTP API (listed when no subcommand is given).",
                       cls=QuickHelpGroup, no_args_is_help=False, invoke_without_command=True)
app.add_typer(keys_app, name="keys")


@keys_app.callback()
def keys_list(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """List the keys of the key file (names, roles, filters, index patterns; never the keys)."""
    if ctx.invoked_subcommand is not None:
        return
    from esrag.keys import KeyFile, describe

    settings = load_settings()
    rows = [describe(r) for r in KeyFile(settings.key_file).records()]
    if as_json:
        typer.echo(json.dumps({"file": str(settings.key_file), "keys": rows}, indent=2))
        return
    if not rows:
        typer.echo(f"no keys in {settings.key_file}")
    for r in rows:
        filters = " ".join(f"{k}={v}" for k, v in sorted(r["filters"].items())) or "-"
        typer.echo(f"{r['name']}  role={r['role']}  filters={filters}  index={r['index'] or '-'}")


@keys_app.command("add")
def keys_add(
    name: Annotated[str, typer.Argument(help="a name for the key (its holder or application)")],
    role: Annotated[str, typer.Option(help="read, ingest or admin")] = "read",
    filters: Annotated[list[str] | None, typer.Option(
        "--filter", help="meta.<key>=value added to every query and stamped on every ingest; "
                         "repeatable")] = None,
    index: Annotated[str | None, typer.Option(
        "--index", help="pattern of the indices the key may use, e.g. 'team-a*' "
                        "(default: ESRAG_INDEX)")] = None,
) -> None:
    """Create a key; it is printed once and only its hash is stored."""
    from esrag.keys import KeyFile, parse_filter_items

    settings = load_settings()
    key = KeyFile(settings.key_file).add(name, role, parse_filter_items(filters or []), index)
    typer.echo(key)
    echo_err(f"key {name!r} ({role}) added to {settings.key_file}; it is not shown again")


@keys_app.command("revoke")
def keys_revoke(name: Annotated[str, typer.Argument(help="the key's name")]) -> None:
    """Remove a key; the API refuses it from its next request on."""
    from esrag.keys import KeyFile

    settings = load_settings()
    KeyFile(settings.key_file).revoke(name)
    typer.echo(f"key {name!r} revoked")


@app.command()
def optimize(
    index: Annotated[str | None, typer.Option(help="index alias (default ESRAG_INDEX)")] = None,
    max_segments: Annotated[int, typer.Option(
        "--max-segments", help="segments per shard to merge down to")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
) -> None:
    """Force-merge the index behind the alias (after a large load: fewer segments, faster kNN)."""
    from esrag.optimize import optimize as run_optimize

    settings = load_settings(index=index)
    summary = run_optimize(settings, max_segments)
    if as_json:
        typer.echo(json.dumps(summary.to_dict()))
    else:
        typer.echo(f"{summary.index} ({summary.alias}): {summary.segments_before} -> "
                   f"{summary.segments_after} segments, {summary.docs} chunks, in {summary.seconds:.1f}s")


def _register_plugins(target: typer.Typer) -> None:
    for ep in sorted(entry_points(group="esrag.commands"), key=lambda e: e.name):
        ep.load()(target)


def _redact_env(text: str) -> str:
    """``text`` without credentials, whatever the settings (they may be what failed to load)."""
    from esrag.redact import redact

    try:
        return load_settings().redact(text)
    except EsragError:
        return redact(text)


def _service_error(exc: BaseException) -> str | None:
    """"Elasticsearch" or "Redis" when ``exc`` is that client's connection error, else None.

    The client libraries are checked only when something already imported them, so commands
    that never talk to a service do not pay for importing them.
    """
    es = sys.modules.get("elasticsearch")
    if es is not None and isinstance(exc, es.TransportError):
        return "Elasticsearch"
    rx = sys.modules.get("redis.exceptions")
    if rx is not None and isinstance(exc, rx.RedisError):
        return "Redis"
    return None


def _click_exception_types() -> tuple[type[BaseException], ...]:
    """ClickException of the click that Typer runs on (recent Typer vendors its own copy, so
    ``click.ClickException`` alone misses its usage errors), plus standalone click's if loaded."""
    types = [c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"]
    click = sys.modules.get("click")
    if click is not None:
        types.append(click.ClickException)
    return tuple(types)


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: user errors become one line and a non-zero exit."""
    _register_plugins(app)
    try:
        rv = app(args=argv, prog_name="esrag", standalone_mode=False)
    except EsragError as exc:
        echo_err(f"error: {_redact_env(str(exc))}")
        return exc.exit_code
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        echo_err("aborted")
        return 130
    except KeyboardInterrupt:
        echo_err("interrupted")
        return 130
    except Exception as exc:  # click usage errors, or a service that went away mid-command
        service = _service_error(exc)
        if service is not None:
            echo_err(f"error: {service} became unavailable ({type(exc).__name__}); nothing stored was lost, "
                     "run the command again")
            return ServiceUnavailable.exit_code
        if isinstance(exc, _click_exception_types()):
            exc.show()  # a usage error prints the usage line, then one sentence
            return exc.exit_code
        raise
    return rv if isinstance(rv, int) else 0


if __name__ == "__main__":
    sys.exit(main())
