"""The gateway's upstream: an OpenAI-compatible engine (vLLM, or another ``persona
serve``) reached over HTTP with httpx. Its failures become OpenAI-shaped 502/503s."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from persona_sdk.decoding.loop import SamplingParams
from persona_sdk.errors import InvalidInputError
from persona_sdk.serving.errors import ApiError

DEFAULT_MAX_CONTEXT = 8192  # when the engine's /v1/models does not say
SCHEMES = {"openai": "http", "openais": "https", "http": "http", "https": "https"}


def engine_url(spec: str) -> str:
    """``openai://HOST:PORT[/v1]`` (``openais://`` for TLS; http(s) too) -> the engine's
    API base URL, ending in ``/v1``."""
    parts = urlsplit(spec)
    if parts.scheme not in SCHEMES or not parts.hostname or parts.query or parts.fragment:
        raise InvalidInputError(f"--engine must look like openai://HOST:PORT[/v1], not {spec!r}")
    path = parts.path.rstrip("/")
    path = path if path.endswith("/v1") else f"{path}/v1"
    return f"{SCHEMES[parts.scheme]}://{parts.netloc}{path}"


class UpstreamNotFound(ApiError):
    """The engine does not serve the model asked for (e.g. an adapter not loaded)."""


def _message(response) -> str:
    try:
        error = response.json().get("error")
        text = error.get("message") if isinstance(error, dict) else error
    except (ValueError, AttributeError):
        text = None
    return str(text or response.text[:300] or response.reason_phrase)


def upstream_status(status: int, message: str, url: str) -> ApiError:
    """An engine's HTTP error as the gateway's: busy or down is 503 (retry), a missing
    model is :class:`UpstreamNotFound`, anything else 502."""
    text = f"the engine at {url} answered {status}: {message}"
    if status in (429, 503):
        return ApiError(503, text, code="engine_unavailable", headers={"Retry-After": "1"})
    if status == 404:
        return UpstreamNotFound(502, text, code="engine_model_not_found")
    return ApiError(502, text, code="engine_error")


def upstream_failure(exc: Exception, url: str) -> ApiError:
    """A transport failure or a malformed answer as a 503 (unreachable) or 502."""
    import httpx

    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, (httpx.ConnectError, httpx.TimeoutException, httpx.RemoteProtocolError)):
        return ApiError(503, f"the engine at {url} is unreachable: {type(exc).__name__}",
                        code="engine_unavailable", headers={"Retry-After": "5"})  # fmt: skip
    return ApiError(502, f"bad answer from the engine at {url}: {type(exc).__name__}: {exc}",
                    code="engine_error")  # fmt: skip


@dataclass
class RemoteRow:
    """One choice as it streams in (the fields ``build_replies`` reads of a decoded row)."""

    text: str = ""
    finish_reason: str | None = None
    tokens: list[int] = field(default_factory=list)  # per-choice counts are not streamed


@dataclass
class Completion:
    """What one upstream call returned."""

    rows: list[RemoteRow]
    usage: dict | None
    timings: dict[str, float]  # seconds: ttft, total


class EngineClient:
    """Chat completions from one OpenAI-compatible engine, always streamed (so a client
    that goes away closes the upstream request too)."""

    def __init__(self, url: str, api_key: str | None = None, model: str | None = None,
                 timeout: float = 600.0):  # fmt: skip
        try:
            import httpx
        except ImportError as exc:  # pragma: no cover - httpx ships with the dev extra
            raise InvalidInputError("gateway mode needs httpx: pip install httpx") from exc
        self.url = url
        self.base_model, self.max_context = model, DEFAULT_MAX_CONTEXT
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.AsyncClient(base_url=url, headers=headers,
                                       timeout=httpx.Timeout(timeout, connect=5.0))  # fmt: skip

    async def probe(self) -> None:
        """Read the engine's models: its base model (the first that is not an adapter,
        unless given) and context length. Raises :class:`ApiError` if it cannot."""
        try:
            response = await self._http.get("/models")
        except Exception as exc:
            raise upstream_failure(exc, self.url) from None
        if response.status_code != 200:
            raise upstream_status(response.status_code, _message(response), self.url)
        models = response.json().get("data") or []
        base = [m for m in models if not m.get("parent") and not m["id"].startswith("persona-")]
        chosen = next((m for m in base if m["id"] == self.base_model), base[0] if base else None)
        if chosen is None:
            raise ApiError(
                502, f"the engine at {self.url} serves no base model", code="engine_error"
            )
        self.base_model = chosen["id"]
        context = chosen.get("max_model_len") or chosen.get("max_context")
        self.max_context = int(context or DEFAULT_MAX_CONTEXT)

    async def complete(self, model: str, messages: list[dict], params: SamplingParams, n: int,
                       on_delta: Callable[[list[str]], None]) -> Completion:  # fmt: skip
        """Stream ``n`` choices of ``model`` for ``messages``; ``on_delta`` gets each
        chunk's new text per choice."""
        body = {"model": model, "messages": messages, "n": n, "stream": True,
                "stream_options": {"include_usage": True},
                "max_tokens": params.max_new_tokens, "temperature": params.temperature,
                "top_p": params.top_p}  # fmt: skip
        if params.seed is not None:
            body["seed"] = params.seed
        if params.stop:
            body["stop"] = list(params.stop)
        rows, usage, started = [RemoteRow() for _ in range(n)], None, time.perf_counter()
        timings = {"ttft": 0.0, "total": 0.0}
        try:
            async with self._http.stream("POST", "/chat/completions", json=body) as response:
                if response.status_code != 200:
                    await response.aread()
                    raise upstream_status(response.status_code, _message(response), self.url)
                async for line in response.aiter_lines():
                    chunk = _event(line)
                    if chunk is None:
                        continue
                    usage = chunk.get("usage") or usage
                    deltas = _apply(chunk, rows)
                    if any(deltas):
                        timings["ttft"] = timings["ttft"] or time.perf_counter() - started
                        on_delta(deltas)
        except Exception as exc:
            raise upstream_failure(exc, self.url) from None
        timings["total"] = time.perf_counter() - started
        return Completion(rows, usage, timings)

    async def close(self) -> None:
        await self._http.aclose()


def _event(line: str) -> dict | None:
    """A server-sent event line as its JSON chunk (``None`` for others and ``[DONE]``);
    an error event becomes an :class:`ApiError`."""
    if not line.startswith("data:"):
        return None
    data = line[5:].strip()
    if data == "[DONE]":
        return None
    chunk = json.loads(data)
    if "error" in chunk:
        error = chunk["error"]
        message = error.get("message") if isinstance(error, dict) else str(error)
        raise ApiError(502, f"the engine failed mid-reply: {message}", code="engine_error")
    return chunk


def _apply(chunk: dict, rows: list[RemoteRow]) -> list[str]:
    """Add a chunk's text to its choices; returns each choice's new text."""
    deltas = [""] * len(rows)
    for choice in chunk.get("choices") or []:
        i = int(choice.get("index", 0))
        if not 0 <= i < len(rows):
            raise ApiError(502, f"the engine sent choice {i} of {len(rows)}", code="engine_error")
        text = (choice.get("delta") or {}).get("content") or ""
        rows[i].text += text
        deltas[i] += text
        rows[i].finish_reason = choice.get("finish_reason") or rows[i].finish_reason
    return deltas
