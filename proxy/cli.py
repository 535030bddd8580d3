"""`vbp`: the command line. Commands parse options and build the same objects the service uses."""

from __future__ import annotations

import sys

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="vertex-batch-proxy")
def cli() -> None:
    """Vertex Batch Proxy: Vertex AI batch prediction through one door, with every dollar accounted for."""


def _not_built(name: str) -> None:
    click.echo(f"vbp {name}: not built yet in this version.", err=True)
    sys.exit(2)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=4000, show_default=True, type=int, help="Port to listen on.")
def serve(host: str, port: int) -> None:
    """Run the proxy, with the completion poller in-process."""
    _not_built("serve")


def main() -> None:
    """Console-script entry point."""
    cli()


if __name__ == "__main__":
    main()
