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
from proxy.emulator.state import DEFAULT_AZURE_TOKEN_QUOTA


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
@click.option("--openai-key", default=None, metavar="KEY",
              help="The OpenAI stand-in's API key (default: generated; printed as VBP_EMULATOR_OPENAI_KEY).")
@click.option("--azure-key", default=None, metavar="KEY",
              help="The Azure stand-in's api-key, both resources (default: generated; printed as "
                   "VBP_EMULATOR_AZURE_KEY).")
@click.option("--azure-token-quota", default=DEFAULT_AZURE_TOKEN_QUOTA, show_default=True,
              type=click.IntRange(min=0), help="Enqueued-token quota of each Azure deployment.")
@click.option("--azure-quota-mode", type=click.Choice(["fail-fast", "fail-batch"]), default="fail-fast",
              show_default=True, help="Over quota: refuse the create with 400 token_limit_exceeded (fail-fast), or "
                                      "create a batch that fails at once (fail-batch).")
def emulator(port: int, gcs_port: int, job_seconds: float, extra_models: tuple[str, ...], token_lifetime: int,
             files_bucket: str, no_echo_keys: bool, workdir: Path | None,
             uploads: tuple[tuple[Path, str], ...], storage_faults: bool, openai_key: str | None,
             azure_key: str | None, azure_token_quota: int, azure_quota_mode: str) -> None:
    """Run the local stand-ins for Vertex AI batch prediction, its OAuth2 token endpoint, Cloud Storage, and the
    OpenAI and Azure OpenAI batch APIs.

    Prints `export KEY=value` lines (VBP_VERTEX_BASE_URL, STORAGE_EMULATOR_HOST, GOOGLE_APPLICATION_CREDENTIALS,
    an absolute path, VBP_FILES_BUCKET, a bucket made empty for the OpenAI door, VBP_MODELS_FILE, the generated
    catalog, and the keys VBP_EMULATOR_OPENAI_KEY and VBP_EMULATOR_AZURE_KEY) to paste into the shell that runs
    `vbp serve` and the clients, then serves until interrupted.
    """
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    stack = EmulatorStack(port=port, gcs_port=gcs_port, job_seconds=job_seconds, extra_models=extra_models,
                          token_lifetime=token_lifetime, workdir=workdir, files_bucket=files_bucket,
                          echo_keys=not no_echo_keys, storage_faults=storage_faults, openai_key=openai_key,
                          azure_key=azure_key, azure_token_quota=azure_token_quota,
                          azure_quota_mode=azure_quota_mode)
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
