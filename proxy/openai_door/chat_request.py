"""One OpenAI chat completions body -> one Vertex GenerateContentRequest (the `request` of a Vertex batch line).

What maps where:
- messages: `system` and `developer` -> `systemInstruction` (all of them, in order, wherever they stand);
  `user` -> a `user` content; `assistant` -> a `model` content (text, then a `functionCall` part per tool call);
  `tool` -> a `functionResponse` part `{"name": <the function of the earlier tool call with that id>,
  "response": {"content": <the text>}}`, consecutive tool messages in one `user` content (Gemini wants the
  answers to parallel calls together).
- content: a string, or parts: `text`; `image_url` with a base64 data URL (-> `inlineData`) or a `gs://` URL
  (-> `fileData`, the type from the extension, see IMAGE_TYPES; the caller's right to it is checked by
  `check_gcs_uri`). http(s) URLs are refused: a Vertex batch job does not fetch web pages.
- generationConfig: max_tokens / max_completion_tokens -> maxOutputTokens, temperature, top_p -> topP,
  stop -> stopSequences, n -> candidateCount, seed, presence_penalty, frequency_penalty, response_format
  (json_object -> responseMimeType application/json; json_schema -> that and responseJsonSchema, the schema as
  given), reasoning_effort -> thinkingConfig.thinkingBudget (REASONING_BUDGETS).
- tools (type function) -> one `functionDeclarations` tool (name, description, parametersJsonSchema; `strict`
  is accepted: Gemini holds calls to the declared schema); tool_choice none/auto/required/a named function ->
  toolConfig.functionCallingConfig mode NONE/AUTO/ANY (+ allowedFunctionNames).
- HARMLESS parameters change nothing upstream and are accepted (only in the values listed there); any other
  parameter is refused by name (`unsupported_parameter`, param `body.<name>`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from proxy.openai_door.line_index import LINE_LABEL
from proxy.openai_door.rejections import LineProblem, invalid, unsupported

# reasoning_effort -> thinkingBudget (tokens). `none`/`minimal` turn thinking off (models that cannot, such as
# gemini-2.5-pro, then fail that line upstream); the others are the budgets Google's OpenAI-compatible endpoint
# documents for low, medium and high.
REASONING_BUDGETS = {"none": 0, "minimal": 0, "low": 1024, "medium": 8192, "high": 24576}
# Accepted because they change nothing Vertex would do: the value each may take (None: any value).
HARMLESS: dict[str, tuple[Any, ...] | None] = {
    "user": None,  # an end-user id, for OpenAI's abuse monitoring
    "safety_identifier": None,  # its successor
    "prompt_cache_key": None,  # a routing hint for OpenAI's prompt cache
    "metadata": None,  # tags for stored completions
    "store": (False,),  # storing completions on OpenAI's side cannot be honoured
    "stream": (False,),  # batch lines never stream
    "parallel_tool_calls": (True,),  # Gemini may call several functions at once; it cannot be forbidden
    "logprobs": (False,),  # log probabilities are not mapped (see REFUSED)
}
# Why a known parameter is refused (any parameter not handled here is refused too, with a generic reason).
REFUSED = {
    "logit_bias": "Gemini has no per-token bias",
    "logprobs": "log probabilities are not returned by this conversion",
    "top_logprobs": "log probabilities are not returned by this conversion",
    "audio": "audio output is not available through the OpenAI door",
    "modalities": "only text output is available through the OpenAI door",
    "prediction": "predicted outputs have no Vertex equivalent",
    "service_tier": "Vertex batch jobs have one tier",
    "web_search_options": "web search is not available in Vertex batch jobs through the OpenAI door",
    "stream": "batch lines cannot stream",
    "stream_options": "batch lines cannot stream",
    "store": "the proxy does not store completions",
    "parallel_tool_calls": "Gemini cannot be kept from calling several functions at once",
    "functions": "the deprecated function fields are not converted; use tools",
    "function_call": "the deprecated function fields are not converted; use tool_choice",
    "verbosity": "Gemini has no verbosity setting",
}
IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp",
               ".heic": "image/heic", ".heif": "image/heif"}
TOOL_CHOICE_MODES = {"none": "NONE", "auto": "AUTO", "required": "ANY"}
_DATA_URL = re.compile(r"data:(image/[A-Za-z0-9.+-]+);base64,(.*)", re.DOTALL)
_GCS_URL = re.compile(r"gs://[a-z0-9][a-z0-9._-]{2,221}/.+", re.DOTALL)
_MESSAGE_KEYS = {
    "system": {"role", "content"},
    "developer": {"role", "content"},
    "user": {"role", "content"},
    "assistant": {"role", "content", "tool_calls", "refusal"},
    "tool": {"role", "content", "tool_call_id"},
}
_HANDLED = {"model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "stop", "n", "seed",
            "presence_penalty", "frequency_penalty", "response_format", "tools", "tool_choice", "reasoning_effort"}

CheckUri = Callable[[str], None]


def chat_request(body: Mapping[str, Any], *, line: int, check_gcs_uri: CheckUri) -> dict[str, Any]:
    """The GenerateContentRequest for one chat body (its line number goes into the request's labels)."""
    for key, value in body.items():
        if key in _HANDLED:
            continue
        allowed = HARMLESS.get(key, ())
        if key in HARMLESS and (allowed is None or any(value is v for v in allowed)):
            continue
        raise unsupported(f"body.{key}", REFUSED.get(key, "the conversion to Vertex has no equivalent for it"))
    request: dict[str, Any] = {}
    contents, system = _messages(body.get("messages"), check_gcs_uri)
    request["contents"] = contents
    if system:
        request["systemInstruction"] = {"parts": system}
    config = _generation_config(body)
    if config:
        request["generationConfig"] = config
    tools = body.get("tools")
    if tools is not None:
        request["tools"] = [{"functionDeclarations": _function_declarations(tools)}]
    if body.get("tool_choice") is not None:
        request["toolConfig"] = {"functionCallingConfig": _tool_choice(body["tool_choice"])}
    request["labels"] = {LINE_LABEL: str(line)}
    return request


def _messages(messages: Any, check_gcs_uri: CheckUri) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    if not isinstance(messages, list) or not messages:
        raise invalid("body.messages", "must be a non-empty list of messages")
    contents: list[dict[str, Any]] = []
    system: list[dict[str, Any]] = []
    tool_names: dict[str, str] = {}
    for at, message in enumerate(messages):
        where = f"body.messages[{at}]"
        if not isinstance(message, Mapping):
            raise invalid(where, "must be an object")
        role = message.get("role")
        if role not in _MESSAGE_KEYS:
            raise invalid(f"{where}.role", "must be one of system, developer, user, assistant, tool")
        for key in message:
            if key not in _MESSAGE_KEYS[role]:
                raise unsupported(f"{where}.{key}", f"a {role} message's {key!r} has no Vertex equivalent")
        content = message.get("content")
        if role in ("system", "developer"):
            system.extend(_parts(content, where, check_gcs_uri, images=False))
        elif role == "user":
            contents.append({"role": "user", "parts": _parts(content, where, check_gcs_uri, images=True)})
        elif role == "assistant":
            if message.get("refusal") is not None:
                raise unsupported(f"{where}.refusal", "an earlier refusal cannot be replayed to Gemini")
            parts = [] if content is None else _parts(content, where, check_gcs_uri, images=False)
            parts.extend(_tool_calls(message.get("tool_calls"), where, tool_names))
            if not parts:
                raise invalid(f"{where}.content", "is empty: an assistant message needs content or tool_calls")
            contents.append({"role": "model", "parts": parts})
        else:
            part = _tool_answer(message, where, tool_names, check_gcs_uri)
            previous = contents[-1] if contents else None
            if previous is not None and previous["role"] == "user" and "functionResponse" in previous["parts"][-1]:
                previous["parts"].append(part)
            else:
                contents.append({"role": "user", "parts": [part]})
    if not contents:
        raise invalid("body.messages", "holds no user or assistant message (Gemini needs at least one)")
    return contents, system


def _parts(content: Any, where: str, check_gcs_uri: CheckUri, *, images: bool) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"text": content}]
    if not isinstance(content, list) or not content:
        raise invalid(f"{where}.content", "must be a string or a non-empty list of parts")
    parts = []
    for at, part in enumerate(content):
        place = f"{where}.content[{at}]"
        if not isinstance(part, Mapping):
            raise invalid(place, "must be an object")
        kind = part.get("type")
        if kind == "text":
            if set(part) != {"type", "text"} or not isinstance(part["text"], str):
                raise invalid(place, "must be {\"type\": \"text\", \"text\": <a string>}")
            parts.append({"text": part["text"]})
        elif kind == "image_url" and images:
            parts.append(_image(part, place, check_gcs_uri))
        elif kind == "image_url":
            raise unsupported(f"{place}.type", "images are only taken in user messages")
        else:
            raise unsupported(f"{place}.type", f"content parts of type {kind!r} are not converted (text and "
                                               "image_url are)")
    return parts


def _image(part: Mapping[str, Any], place: str, check_gcs_uri: CheckUri) -> dict[str, Any]:
    image = part.get("image_url")
    if set(part) != {"type", "image_url"} or not isinstance(image, Mapping) or not isinstance(image.get("url"), str):
        raise invalid(place, "must be {\"type\": \"image_url\", \"image_url\": {\"url\": <a string>}}")
    for key, value in image.items():
        if key == "detail" and value != "auto":
            raise unsupported(f"{place}.image_url.detail", "Gemini sets no resolution per image (only \"auto\" "
                                                           "is taken)")
        if key not in ("url", "detail"):
            raise unsupported(f"{place}.image_url.{key}", "it has no Vertex equivalent")
    url: str = image["url"]
    param = f"{place}.image_url.url"
    if url.startswith("data:"):
        match = _DATA_URL.fullmatch(url)
        if match is None:
            raise invalid(param, "must be a base64 data URL of an image (data:image/png;base64,...)")
        return {"inlineData": {"mimeType": match.group(1), "data": match.group(2)}}
    if url.startswith("gs://"):
        if _GCS_URL.fullmatch(url) is None:
            raise invalid(param, "is not a gs://bucket/object URI")
        dot = url.rfind(".")
        mime = IMAGE_TYPES.get(url[dot:].lower()) if dot > url.rfind("/") else None
        if mime is None:
            raise unsupported(param, "the image type cannot be told from the object's extension (one of "
                                     f"{', '.join(IMAGE_TYPES)} is needed)")
        check_gcs_uri(url)
        return {"fileData": {"mimeType": mime, "fileUri": url}}
    if url.startswith(("http://", "https://")):
        raise unsupported(param, "a Vertex batch job cannot fetch web URLs; send the image as a base64 data URL "
                                 "or copy it to Cloud Storage and give its gs:// URI")
    raise invalid(param, "must be a base64 data URL or a gs:// URI")


def _tool_calls(calls: Any, where: str, tool_names: dict[str, str]) -> list[dict[str, Any]]:
    if calls is None:
        return []
    if not isinstance(calls, list):
        raise invalid(f"{where}.tool_calls", "must be a list")
    parts = []
    for at, call in enumerate(calls):
        place = f"{where}.tool_calls[{at}]"
        function = call.get("function") if isinstance(call, Mapping) else None
        if (not isinstance(call, Mapping) or call.get("type") != "function" or not isinstance(call.get("id"), str)
                or not isinstance(function, Mapping) or not isinstance(function.get("name"), str)
                or not isinstance(function.get("arguments"), str)):
            raise invalid(place, "must be {\"id\", \"type\": \"function\", \"function\": {\"name\", \"arguments\"}}")
        try:
            arguments = json.loads(function["arguments"]) if function["arguments"].strip() else {}
        except ValueError:
            raise invalid(f"{place}.function.arguments", "is not JSON") from None
        if not isinstance(arguments, dict):
            raise invalid(f"{place}.function.arguments", "must be a JSON object")
        tool_names[call["id"]] = function["name"]
        parts.append({"functionCall": {"name": function["name"], "args": arguments}})
    return parts


def _tool_answer(message: Mapping[str, Any], where: str, tool_names: dict[str, str],
                 check_gcs_uri: CheckUri) -> dict[str, Any]:
    call_id = message.get("tool_call_id")
    name = tool_names.get(call_id) if isinstance(call_id, str) else None
    if name is None:
        raise invalid(f"{where}.tool_call_id", "names no tool call of an earlier assistant message")
    parts = _parts(message.get("content"), where, check_gcs_uri, images=False)
    text = "".join(part["text"] for part in parts)
    return {"functionResponse": {"name": name, "response": {"content": text}}}


def _number(body: Mapping[str, Any], name: str, low: float, high: float, *, integer: bool = False) -> Any:
    value: Any = body.get(name)
    if value is None:
        return None
    number = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not number or not low <= value <= high:
        kind, bounds = ("an integer", (int(low), int(high))) if integer else ("a number", (low, high))
        raise invalid(f"body.{name}", f"must be {kind} from {bounds[0]} to {bounds[1]}")
    return value


def _generation_config(body: Mapping[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    limits = {name: _number(body, name, 1, 2**31 - 1, integer=True)
              for name in ("max_tokens", "max_completion_tokens")}
    given = {value for value in limits.values() if value is not None}
    if len(given) > 1:
        raise invalid("body.max_completion_tokens", "differs from body.max_tokens (give one of them)")
    if given:
        config["maxOutputTokens"] = given.pop()
    for name, key, low, high in (("temperature", "temperature", 0, 2), ("top_p", "topP", 0, 1),
                                 ("presence_penalty", "presencePenalty", -2, 2),
                                 ("frequency_penalty", "frequencyPenalty", -2, 2)):
        value = _number(body, name, low, high)
        if value is not None:
            config[key] = value
    n = _number(body, "n", 1, 8, integer=True)
    if n is not None:
        config["candidateCount"] = n
    seed = _number(body, "seed", -(2**63), 2**63 - 1, integer=True)
    if seed is not None:
        config["seed"] = seed
    stop = body.get("stop")
    if stop is not None:
        stops = [stop] if isinstance(stop, str) else stop
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops) or len(stops) > 5:
            raise invalid("body.stop", "must be a string or a list of at most 5 strings")
        if stops:
            config["stopSequences"] = stops
    config.update(_response_format(body.get("response_format")))
    effort = body.get("reasoning_effort")
    if effort is not None:
        if effort not in REASONING_BUDGETS:
            raise invalid("body.reasoning_effort", f"must be one of {', '.join(REASONING_BUDGETS)}")
        config["thinkingConfig"] = {"thinkingBudget": REASONING_BUDGETS[effort]}
    return config


def _response_format(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    kind = value.get("type") if isinstance(value, Mapping) else None
    if kind == "text" and set(value) == {"type"}:
        return {}
    if kind == "json_object" and set(value) == {"type"}:
        return {"responseMimeType": "application/json"}
    if kind == "json_schema" and set(value) == {"type", "json_schema"}:
        spec = value["json_schema"]
        if not isinstance(spec, Mapping) or not isinstance(spec.get("schema"), Mapping):
            raise invalid("body.response_format.json_schema.schema", "must be a JSON schema object")
        return {"responseMimeType": "application/json", "responseJsonSchema": spec["schema"]}
    raise invalid("body.response_format", "must be {\"type\": \"text\"}, {\"type\": \"json_object\"} or "
                                          "{\"type\": \"json_schema\", \"json_schema\": {...}}")


def _function_declarations(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list) or not tools:
        raise invalid("body.tools", "must be a non-empty list")
    declarations = []
    for at, tool in enumerate(tools):
        place = f"body.tools[{at}]"
        if not isinstance(tool, Mapping) or tool.get("type") != "function":
            raise unsupported(f"{place}.type", "only tools of type \"function\" are converted")
        function = tool.get("function")
        if not isinstance(function, Mapping) or not isinstance(function.get("name"), str) or not function["name"]:
            raise invalid(f"{place}.function", "must be an object with a name")
        declaration: dict[str, Any] = {"name": function["name"]}
        for key, value in function.items():
            if key == "description" and value is not None:
                declaration["description"] = value
            elif key == "parameters" and value is not None:
                if not isinstance(value, Mapping):
                    raise invalid(f"{place}.function.parameters", "must be a JSON schema object")
                declaration["parametersJsonSchema"] = value
            elif key not in ("name", "description", "parameters", "strict"):
                raise unsupported(f"{place}.function.{key}", "it has no Vertex equivalent")
        declarations.append(declaration)
    return declarations


def _tool_choice(choice: Any) -> dict[str, Any]:
    if isinstance(choice, str) and choice in TOOL_CHOICE_MODES:
        return {"mode": TOOL_CHOICE_MODES[choice]}
    function = choice.get("function") if isinstance(choice, Mapping) else None
    if (isinstance(choice, Mapping) and choice.get("type") == "function" and isinstance(function, Mapping)
            and isinstance(function.get("name"), str)):
        return {"mode": "ANY", "allowedFunctionNames": [function["name"]]}
    raise LineProblem("body.tool_choice must be none, auto, required or {\"type\": \"function\", \"function\": "
                      "{\"name\": ...}}.", param="body.tool_choice")
