"""`vbp emulator`: run the local Google stand-ins and print the environment that points clients at them."""

from __future__ import annotations

import shlex
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

import click

from proxy.emulator.gcs import JobFailure, parse_object_gs
from proxy.emulator.stack import EmulatorStack


def export_lines(env: dict[str, str]) -> list[str]:
    """`export KEY=value` lines a shell takes as they are (pasted, or all at once with eval)."""
    return [f"export {key}={shlex.quote(value)}" for key, value in env.items()]


def parse_export_line(line: str) -> tuple[str, str] | None:
    """`(KEY, value)` of one `export KEY=value` line as a shell reads it; None for any other line."""
    words = shlex.split(line)
    if len(words) != 2 or words[0] != "export" or "=" not in words[1]:
        return None
    key, _, value = words[1].partition("=")
    return key, value


def _check_uploads(ctx: click.Context, param: click.Parameter,
                   value: tuple[tuple[Path, str], ...]) -> tuple[tuple[Path, str], ...]:
    for _, uri in value:
        try:
            parse_object_gs(uri)
        except JobFailure as exc:
            raise click.BadParameter(exc.message) from None
    return value


@click.command()
@click.option("--port", default=8790, show_default=True, type=int,
              help="Port of the Vertex API and token endpoint (0: any free port).")
@click.option("--gcs-port", default=0, type=int, help="Port of fake-gcs-server (default: any free port).")
@click.option("--job-seconds", default=8.0, show_default=True, type=click.FloatRange(min=0),
              help="How long a small job takes from PENDING to SUCCEEDED.")
@click.option("--extra-model", "extra_models", multiple=True, metavar="NAME",
              help="Serve a model beyond the built-in Gemini and embedding list (repeatable).")
@click.option("--token-lifetime", default=3600, show_default=True, type=click.IntRange(min=1),
              help="Seconds an access token from /token stays valid.")
@click.option("--files-bucket", default="vbp-files", show_default=True,
              help="Bucket made at start for the OpenAI door (printed as VBP_FILES_BUCKET).")
@click.option("--no-echo-keys", "no_echo_keys", is_flag=True,
              help="Vertex rows do not echo the sibling keys of input lines (e.g. custom_id), only `request`.")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for the generated service-account file (default: a temporary folder).")
@click.option("--upload", "uploads", multiple=True, nargs=2, callback=_check_uploads, metavar="FILE GS_URI",
              type=(click.Path(exists=True, dir_okay=False, path_type=Path), str),
              help="Copy a local file into the local Cloud Storage before serving, e.g. "
                   "--upload examples/input.jsonl gs://my-bucket/team-a/input.jsonl (repeatable).")
@click.option("--storage-faults", is_flag=True,
              help="Put a front before Cloud Storage so that the storage_stall fault can stall object reads.")
def emulator(port: int, gcs_port: int, job_seconds: float, extra_models: tuple[str, ...], token_lifetime: int,
             files_bucket: str, no_echo_keys: bool, workdir: Path | None,
             uploads: tuple[tuple[Path, str], ...], storage_faults: bool) -> None:
    """Run the local stand-ins for Vertex AI batch prediction, its OAuth2 token endpoint and Cloud Storage.

    Prints `export KEY=value` lines (VBP_VERTEX_BASE_URL, STORAGE_EMULATOR_HOST, GOOGLE_APPLICATION_CREDENTIALS,
    an absolute path, and VBP_FILES_BUCKET, a bucket made empty for the OpenAI door) to paste into the shell that
    runs `vbp serve` and the clients, then serves until interrupted.
    """
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    stack = EmulatorStack(port=port, gcs_port=gcs_port, job_seconds=job_seconds, extra_models=extra_models,
                          token_lifetime=token_lifetime, workdir=workdir, files_bucket=files_bucket,
                          echo_keys=not no_echo_keys, storage_faults=storage_faults)
    try:
        stack.start()
        for source, uri in uploads:
            stack.upload(source, uri)
            click.echo(f"vbp emulator: uploaded {source} to {uri}", err=True)
        for line in export_lines(stack.env):
            click.echo(line)
        sys.stdout.flush()
        click.echo(f"vbp emulator: serving on {stack.base_url} (Ctrl-C to stop)", err=True)
        while not stop.wait(0.5):
            pass
    finally:
        stack.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    emulator()
