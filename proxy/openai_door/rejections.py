"""Why a caller's batch file cannot run: `FileRejected` (the whole file) and `LineProblem` (one line's body).

Codes are OpenAI's batch validation codes (invalid_json_line, duplicate_custom_id, url_mismatch, model_mismatch,
too_many_tasks, empty_file, invalid_request) plus missing_model, file_too_large and unsupported_parameter (a
parameter the conversion to Vertex cannot honour: refused by name, never dropped).
"""

from __future__ import annotations


class FileRejected(Exception):
    """A caller's batch file that cannot run; nothing of it is stored."""

    def __init__(self, message: str, *, code: str, line: int | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message  # the whole sentence, naming the line: "Line 3: custom_id 'a' is used twice ..."
        self.line = line  # 1-based, None for whole-file problems (empty, too large)
        self.param = param  # the offending field where one is named, e.g. "body.logit_bias"
        self.code = code

    def __repr__(self) -> str:
        return f"FileRejected({self.message!r}, code={self.code!r}, line={self.line!r}, param={self.param!r})"


class LineProblem(Exception):
    """What is wrong with one line's body; the file reader adds the line number and raises FileRejected."""

    def __init__(self, message: str, *, param: str | None, code: str = "invalid_request") -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


def unsupported(param: str, why: str) -> LineProblem:
    """A parameter the conversion cannot honour, refused by name."""
    return LineProblem(f"{param} is not supported: {why}.", param=param, code="unsupported_parameter")


def invalid(param: str, problem: str) -> LineProblem:
    """A parameter with a value no request could take."""
    return LineProblem(f"{param} {problem}.", param=param)
