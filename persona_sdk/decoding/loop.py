"""A small batched decoding loop with a reused KV cache.

It is written out (rather than calling ``model.generate``) because personalization needs
control of every step: rows of one batch belong to different users, stream on their own,
stop on their own strings, and the guidance mechanism swaps the forward pass per step.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch

from persona_sdk.config import GenerationConfig
from persona_sdk.decoding.models import ModelHost
from persona_sdk.errors import InvalidInputError
from persona_sdk.validation import validate_int, validate_number

# forward(input_ids, attention_mask, position_ids, cache, logits_to_keep) -> (last logits, cache)
ForwardFn = Callable[..., tuple[torch.Tensor, object]]


@dataclass
class SamplingParams:
    """Decoding settings; ``temperature == 0`` is greedy."""

    max_new_tokens: int = 200
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()


@dataclass
class RowState:
    """One sequence of a batch: its tokens, text so far, and why it ended."""

    prompt_tokens: int
    tokens: list[int] = field(default_factory=list)
    text: str = ""
    emitted: int = 0  # chars of ``text`` already streamed
    finish_reason: str | None = None  # "stop" (eos or stop string) or "length"
    restart_requested: bool = False  # set by a processor: drop the reply and start again
    restarts: int = 0  # how often the reply was dropped (processors compare to reset state)

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None


class LogitsProcessor:
    """A per-row hook of the decoding loop (the guidance guard, constraint masks).

    Each step, :meth:`process` may change the logits ``(B, V)`` between the forward and
    sampling (processors run in list order); :meth:`observe` then sees the sampled
    tokens ``(B,)`` and the rows after they advanced. ``active[i]`` says whether row i
    took its token into its reply (False once finished, and for the stop token). Setting
    ``row.restart_requested`` in :meth:`observe` asks the loop to drop the row's reply and
    decode it again from the prompt (granted unless its text was already streamed; the
    row's ``restarts`` then grows).
    """

    def process(self, logits: torch.Tensor, rows: Sequence[RowState]) -> torch.Tensor:
        return logits

    def observe(self, tokens: torch.Tensor, rows: Sequence[RowState], active: list[bool]) -> None:
        return None


def sampling_params(
    config: GenerationConfig,
    max_context: int,
    best_of: int,
    max_new_tokens: int | None,
    temperature: float | None,
    top_p: float | None,
    seed: int | None,
    stop: Sequence[str] | None,
) -> SamplingParams:
    """A request's checked decoding settings; ``None`` takes ``config``'s default."""
    best_of = validate_int(best_of, "best_of", low=1, high=config.max_best_of)
    if best_of > 1 and temperature is None:
        temperature = config.best_of_temperature  # N greedy copies would be equal
    if best_of > 1 and top_p is None:
        top_p = config.best_of_top_p
    if best_of > 1 and temperature == 0:
        raise InvalidInputError("best_of > 1 samples its candidates: give temperature > 0")
    max_new = config.max_new_tokens if max_new_tokens is None else max_new_tokens
    stops = tuple(config.stop if stop is None else stop)
    if any(not isinstance(s, str) or not s for s in stops):
        raise InvalidInputError("stop strings must be non-empty strings")
    temperature = config.temperature if temperature is None else temperature
    top_p = config.top_p if top_p is None else top_p
    return SamplingParams(
        max_new_tokens=validate_int(max_new, "max_new_tokens", low=1, high=max_context),
        temperature=validate_number(temperature, "temperature", low=0.0, high=10.0),
        top_p=validate_number(top_p, "top_p", low=0.0, high=1.0) or 1.0,
        seed=None if seed is None else validate_int(seed, "seed", low=0),
        stop=stops,
    )


def default_forward(host: ModelHost) -> ForwardFn:
    """The plain base-model step."""

    def forward(input_ids, attention_mask, position_ids, cache, logits_to_keep=1):
        out = host.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=logits_to_keep,
        )
        return out.logits[:, -1, :].float(), out.past_key_values

    return forward


def sample_next(
    logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None
) -> torch.Tensor:
    """Pick one token per row: argmax when greedy, else temperature and nucleus sampling."""
    if params.temperature <= 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits / params.temperature, dim=-1)
    if params.top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        # Drop tokens once the mass before them already reaches top_p (keeps at least one).
        drop = sorted_probs.cumsum(dim=-1) - sorted_probs >= params.top_p
        sorted_probs = sorted_probs.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def _held_back(text: str, stops: tuple[str, ...]) -> int:
    """Chars at the end of ``text`` that may still grow into a stop string or a UTF-8 char."""
    partial = len(text) - len(text.rstrip("\ufffd"))  # bytes of a char not yet complete
    text = text[: len(text) - partial]
    hold = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:size]):
                hold = max(hold, size)
                break
    return partial + hold


class BatchGeneration:
    """Iterate to stream: each step yields the new text of every row ('' when none).

    After iteration, ``rows`` holds each row's full text and tokens, and ``timings`` the
    time to first token and the total decode time.
    """

    def __init__(
        self,
        host: ModelHost,
        prompts: list[list[int]],
        params: SamplingParams,
        forward: ForwardFn | None = None,
        processors: Sequence[LogitsProcessor] = (),
    ):
        self.host = host
        self.prompts = prompts
        self.params = params
        self.forward = forward or default_forward(host)
        self.processors = list(processors)
        self.rows = [RowState(len(p)) for p in prompts]
        self.timings: dict[str, float] = {}
        self.forward_calls: list[int] = []  # tokens per row fed to each forward (for tests)
        self.streaming = True  # text already yielded cannot be taken back; run() clears it

    def _advance(self, row: RowState, token: int) -> None:
        tokenizer = self.host.tokenizer
        if token in self.host.stop_token_ids:
            row.finish_reason = "stop"
            return
        row.tokens.append(token)
        row.text = tokenizer.decode(row.tokens, skip_special_tokens=True)
        for stop in self.params.stop:
            cut = row.text.find(stop, max(0, row.emitted - len(stop)))
            if cut >= 0:
                row.text = row.text[:cut]
                row.finish_reason = "stop"
        if not row.finished and len(row.tokens) >= self.params.max_new_tokens:
            row.finish_reason = "length"

    def _take(self, row: RowState, token: int) -> bool:
        """Advance an unfinished row; whether the token joined its reply."""
        if row.finished:
            return False
        before = len(row.tokens)
        self._advance(row, token)
        return len(row.tokens) > before

    def _restart(self, tokens: list[int], mask: torch.Tensor, width: int) -> list[int]:
        """Grant restart requests: hide the row's reply (and its prompt's last token) from
        attention, so refeeding that token yields the first reply token's logits again
        with the cache kept. Edits ``tokens`` (the next inputs) and ``mask`` in place."""
        granted = []
        for i, row in enumerate(self.rows):
            if not row.restart_requested:
                continue
            row.restart_requested = False
            if self.streaming and row.emitted:
                continue
            mask[i, width - 1 :] = 0
            tokens[i] = self.prompts[i][-1]
            row.tokens, row.text, row.emitted, row.finish_reason = [], "", 0, None
            row.restarts += 1
            granted.append(i)
        return granted

    def _delta(self, row: RowState) -> str:
        end = (
            len(row.text)
            if row.finished
            else len(row.text) - _held_back(row.text, self.params.stop)
        )
        if end <= row.emitted:
            return ""
        delta, row.emitted = row.text[row.emitted : end], end
        return delta

    @torch.inference_mode()
    def __iter__(self) -> Iterator[list[str]]:
        device = self.host.device
        pad = self.host.tokenizer.pad_token_id
        width = max(len(p) for p in self.prompts)
        input_ids = torch.full((len(self.prompts), width), pad, dtype=torch.long)
        mask = torch.zeros((len(self.prompts), width), dtype=torch.long)
        for i, prompt in enumerate(self.prompts):  # left padding keeps every row's end aligned
            input_ids[i, width - len(prompt) :] = torch.tensor(prompt)
            mask[i, width - len(prompt) :] = 1
        input_ids, mask = input_ids.to(device), mask.to(device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        generator = None
        if self.params.seed is not None:
            generator = torch.Generator(device=device).manual_seed(self.params.seed)
        start = time.perf_counter()
        logits, cache = self.forward(input_ids, mask, positions, None)
        self.forward_calls.append(width)
        steps = 2 * self.params.max_new_tokens  # room for one restart per row
        for _ in range(steps):
            for processor in self.processors:
                logits = processor.process(logits, self.rows)
            sampled = sample_next(logits, self.params, generator)
            tokens = sampled.tolist()
            active = [self._take(row, token) for row, token in zip(self.rows, tokens)]
            for processor in self.processors:
                processor.observe(sampled, self.rows, active)
            restarted = self._restart(tokens, mask, width)
            if "ttft" not in self.timings:
                self.timings["ttft"] = time.perf_counter() - start
            yield [self._delta(row) for row in self.rows]
            if all(row.finished for row in self.rows):
                break
            step = torch.tensor(tokens, device=device).unsqueeze(-1)
            mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=-1)
            positions = positions[:, -1:] + 1
            for i in restarted:  # the prompt's last token again, at its own position
                positions[i] = len(self.prompts[i]) - 1
            logits, cache = self.forward(step, mask, positions, cache)
            self.forward_calls.append(1)
        for row in self.rows:  # a row cut by the step budget ends on its length
            if not row.finished:
                row.finish_reason = "length"
        tail = [self._delta(row) for row in self.rows]
        if any(tail):
            yield tail
        self.timings["total"] = time.perf_counter() - start

    def run(self) -> list[RowState]:
        """Decode to the end without streaming."""
        self.streaming = False
        for _ in self:
            pass
        return self.rows
