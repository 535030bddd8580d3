"""`vbp estimate FILE` on both formats, without a server: the format told by the first line (or `--format`), an
OpenAI-format file of a Gemini model estimated from the Vertex lines the door converts it to, with figures computed
here from the lines (the documented token rule, each line's cap or the model's maximum output, the pricing table's
batch rates); a file the door would refuse, a Vertex file without --model and a --model the lines contradict are
refused with the reason. (The same file through the door: tests/openai_door/test_estimate_file.py.)"""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from proxy.budgets.tokens import text_tokens
from proxy.cli import cli
from proxy.clock import utcnow
from proxy.metering.pricing import PricingTable
from proxy.money import format_usd

MODEL = "gemini-2.5-flash-lite"
SYSTEM, QUESTION = "You are a helpful assistant.", "What is the capital of France, and why?"


def chat(custom_id: str, text: str, model: str = MODEL, **body: object) -> dict[str, object]:
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": model, "messages": [{"role": "user", "content": text}], **body}}


LINES = [chat("a", "Hello world!", max_tokens=10), chat("b", QUESTION, max_completion_tokens=25), chat("c", "One")]
LINES[0]["body"]["messages"].insert(0, {"role": "system", "content": SYSTEM})  # type: ignore[index]


def write(path: Path, lines: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["estimate", *args], env={"VBP_MODELS_FILE": None, "VBP_PRICING_DIR": None})
    return result.exit_code, result.output


def expected(lines: list[dict[str, object]]) -> dict[str, object]:
    """The figures of OpenAI chat lines of MODEL, from the lines and the pricing table alone."""
    table = PricingTable.load()
    rates, maximum = table.rates_for("vertex", MODEL, utcnow()), table.max_output_tokens("vertex", MODEL)
    assert rates is not None and maximum == 65536
    bodies = [line["body"] for line in lines]
    prompt = sum(text_tokens(m["content"]) for body in bodies for m in body["messages"])  # type: ignore[index]
    output = sum(body.get("max_completion_tokens") or body.get("max_tokens") or maximum  # type: ignore[union-attr]
                 for body in bodies)
    low = prompt * rates.batch.input
    return {"lines": len(lines), "input_tokens": prompt, "max_output_tokens": output,
            "cost_usd": {"low": format_usd(low), "high": format_usd(low + output * rates.batch.output)}}


def test_an_openai_file_is_told_by_its_lines_and_estimated_as_the_door_converts_it(tmp_path: Path) -> None:
    file = write(tmp_path / "batch.jsonl", LINES)
    figures = expected(LINES)
    assert figures == {"lines": 3, "input_tokens": 20, "max_output_tokens": 10 + 25 + 65536,
                       "cost_usd": {"low": "0.000001", "high": "0.0131152"}}
    for args in ([], ["--model", MODEL], ["--format", "openai"]):
        code, output = run(str(file), "--json", *args)
        assert code == 0, output
        got = json.loads(output)
        assert got["model"] == MODEL and got["malformed_lines"] == 0
        assert {name: got[name] for name in figures} == figures, args
    code, output = run(str(file))
    assert (code, output) == (0, f"{MODEL}: 3 lines, 20 input tokens, at most 65571 output tokens\n"
                                 "cost: 0.000001 - 0.0131152 USD\n")


def test_a_model_the_lines_contradict_and_a_file_the_door_refuses_are_refused(tmp_path: Path) -> None:
    file = write(tmp_path / "batch.jsonl", LINES)
    assert run(str(file), "--model", "gemini-2.5-pro") == (
        1, "Error: the file's lines name the model 'gemini-2.5-flash-lite', not 'gemini-2.5-pro'\n")
    twice = write(tmp_path / "twice.jsonl", [LINES[1], LINES[1]])
    code, output = run(str(twice))
    assert code == 1
    assert output.startswith("Error: the OpenAI door would refuse this file: Line 2: ") and "custom_id" in output
    gpt = write(tmp_path / "gpt.jsonl", [chat("a", "Hi", model="gpt-4.1-mini")])
    assert run(str(gpt)) == (1, "Error: the model 'publishers/google/models/gpt-4.1-mini' has no price in the "
                                "pricing table (a model of OpenAI or Azure needs the model catalog that serves it: "
                                "VBP_MODELS_FILE)\n")


def test_a_vertex_file_needs_its_model_and_is_estimated_as_before(tmp_path: Path) -> None:
    vertex = tmp_path / "vertex.jsonl"
    vertex.write_text(json.dumps({"request": {"contents": [{"role": "user", "parts": [{"text": "Hello world!"}]}],
                                              "generationConfig": {"maxOutputTokens": 10}}}) + "\n")
    assert run(str(vertex)) == (1, "Error: a Vertex batch input names no model: give --model\n")
    code, output = run(str(vertex), "--model", MODEL, "--json")
    assert code == 0, output
    got = json.loads(output)
    # 3 input tokens at the batch rate of 0.05 USD per 1M, and 10 output tokens at 0.20
    assert (got["lines"], got["input_tokens"], got["max_output_tokens"], got["cost_usd"]) == (
        1, 3, 10, {"low": "0.00000015", "high": "0.00000215"})
    # --format vertex reads an OpenAI file as Vertex lines: none of them is a Vertex request
    code, output = run(str(write(tmp_path / "batch.jsonl", LINES)), "--format", "vertex", "--model", MODEL, "--json")
    assert code == 0, output
    assert (json.loads(output)["lines"], json.loads(output)["malformed_lines"]) == (3, 3)
