"""``persona eval rules``: are checkable rules kept? Compliance and quality, three ways.

Each of :data:`PHRASINGS` (two or more per constraint type, each parsing to exactly one
constraint) is paired with each of the first ``prompts`` of :data:`PROMPTS`, and replies
are decoded on the host model under three conditions:

- ``no rule``: the plain prompt (compliance by chance; one decode per prompt);
- ``prompt only``: the rule in the system prompt's preference block, as retrieval puts it;
- ``enforced``: the same prompt, decoded with the rule's constraints enforced.

Prompt-only and enforced rows of a batch run back to back on the same prompts, so their
tokens/s compare under the same machine load. Quality is measured per condition: the
degenerate rate (:func:`persona_sdk.quality.degenerate_reasons`), the base model's NLL
per token of the reply after the *plain* prompt (how natural the text is, whatever rule
shaped it) and relevance (embedder cosine to the request).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from persona_sdk.config import GenerationConfig
from persona_sdk.constraints import merge, parse_rule, verify
from persona_sdk.constraints.enforce import ConstraintProcessor
from persona_sdk.decoding.loop import BatchGeneration, SamplingParams
from persona_sdk.decoding.prompting import build_messages
from persona_sdk.memory.retrieval import RetrievedRule
from persona_sdk.quality import degenerate_reasons, relevance, score_replies

PHRASINGS: tuple[str, ...] = (
    "Answer in one sentence.", "Keep every reply to two sentences max.",
    "Keep every reply under 30 words.", "Never more than 40 words.",
    "Write only in lowercase letters.", "Reply in all caps.",
    "Never use emojis.", "No commas, ever.", "Don't use exclamation marks.",
    "Never use the word 'sleep'.", "Never say 'delve'.",
    "Always include the word 'honestly'.", "Always mention the word 'today'.",
    "Start every reply with the word 'Sure'.", "Begin each answer with 'Okay'.",
    "End every reply with 'Cheers'.", "Always finish with the phrase 'Hope this helps'.",
    "End every reply with a question to me.", "Always end your answer with a question.",
    "Sign every reply as Sam.", "Sign your replies as Alex.",
    "Always add a P.S. at the end.", "Add a postscript to every reply.",
    "Always answer with a bulleted list.", "Use exactly 3 bullet points.",
    "Answer as a numbered list of 4 items.",
    "Start every reply with a title line.", "Always give your answer a title.",
    "Wrap every reply in double quotes.", "Put your whole answer in quotation marks.",
    "Reply in JSON only.", "Always respond with valid JSON.",
    "Always greet me first.", "Don't greet me.",
)  # fmt: skip
PROMPTS: tuple[str, ...] = (
    "Give me tips for better sleep.", "How do I make a good cup of coffee?",
    "Explain how vaccines work.", "What should I pack for a weekend hike?",
    "Write a note to my manager about being late on Friday.",
    "How can I save money on groceries?", "Why is the sky blue?",
    "Suggest a name for my new cat.", "How do I start learning to code?",
    "What is a black hole?", "How do I stay focused while studying?",
    "Recommend a healthy breakfast.",
)  # fmt: skip
CONDITIONS = ("no rule", "prompt only", "enforced")
Progress = Callable[[int, int], None]


@dataclass
class RulesEvalConfig:
    """Every phrasing × the first ``prompts`` prompts, ``batch`` rows per decode."""

    prompts: int = 10
    max_new_tokens: int = 48
    batch: int = 16
    phrasings: int = len(PHRASINGS)


@dataclass
class RulesEvalResult:
    model: str
    config: dict
    conditions: dict = field(default_factory=dict)  # name -> summary
    per_type: dict = field(default_factory=dict)  # kind -> {condition: compliance}
    targets: dict = field(default_factory=dict)
    rows: list = field(default_factory=list)  # one record per (phrasing, prompt, condition)

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1))
        return path


def phrasing_constraints(phrasings: tuple[str, ...]) -> list[tuple[str, str, list]]:
    """(phrasing, constraint kind, constraints) for each; a phrasing that does not parse
    to exactly one constraint is a bug in the table, not a result."""
    out = []
    for text in phrasings:
        found = merge(parse_rule(text))
        if len(found) != 1:
            raise ValueError(f"eval phrasing {text!r} parses to {found}, not one constraint")
        out.append((text, found[0].kind, found))
    return out


def _prompt_ids(host, prompt: str, rule: str | None, system: str) -> list[int]:
    rules = [RetrievedRule(0, rule, 1.0, "stated", None, 1, 1.0)] if rule else []
    return host.chat_ids(build_messages([{"role": "user", "content": prompt}], rules, system))


def _decode(host, prompts: list[list[int]], params: SamplingParams, constraints=None):
    """Rows' texts and token counts, and the decode's wall time and step count."""
    processors = (
        [ConstraintProcessor(host, constraints, params.max_new_tokens)] if constraints else []
    )
    gen = BatchGeneration(host, prompts, params, processors=processors)
    start = time.perf_counter()
    steps = sum(1 for _ in gen)
    seconds = time.perf_counter() - start
    return [r.text.strip() for r in gen.rows], [len(r.tokens) for r in gen.rows], seconds, steps


def run_rules_eval(persona, config: RulesEvalConfig, progress=None) -> RulesEvalResult:
    """Decode every (phrasing, prompt) under each condition and measure it (module doc)."""
    host = persona.host
    system = GenerationConfig().system_prompt
    params = SamplingParams(max_new_tokens=config.max_new_tokens)
    table = phrasing_constraints(PHRASINGS[: config.phrasings])
    prompts = list(PROMPTS[: config.prompts])
    items = [(p, kind, cons, q) for p, kind, cons in table for q in prompts]
    task = progress.add_task("rules", total=len(items) * 2 + len(prompts)) if progress else None
    timing = {c: {"seconds": 0.0, "tokens": 0, "row_steps": 0} for c in CONDITIONS}
    plain = [_prompt_ids(host, q, None, system) for q in prompts]
    texts, counts, seconds, steps = _decode(host, plain, params)
    _time(timing["no rule"], counts, seconds, steps, len(plain))
    base_text = dict(zip(prompts, texts))
    if progress:
        progress.advance(task, len(prompts))
    records = []
    for start in range(0, len(items), config.batch):
        chunk = items[start : start + config.batch]
        ids = [_prompt_ids(host, q, p, system) for p, _, _, q in chunk]
        for condition, constraints in (("prompt only", None), ("enforced", [c[2] for c in chunk])):
            texts, counts, seconds, steps = _decode(host, ids, params, constraints)
            _time(timing[condition], counts, seconds, steps, len(ids))
            for (phrase, kind, cons, q), text, n in zip(chunk, texts, counts):
                records.append(_record(condition, phrase, kind, cons, q, text, n))
            if progress:
                progress.advance(task, len(chunk))
    for phrase, kind, cons, q in items:  # chance: the plain reply against each rule
        records.append(_record("no rule", phrase, kind, cons, q, base_text[q], None))
    _quality(persona, records, plain, prompts)
    return _summarise(host, config, records, timing)


def _time(slot: dict, counts: list[int], seconds: float, steps: int, rows: int) -> None:
    slot["seconds"] += seconds
    slot["tokens"] += sum(counts)
    slot["row_steps"] += steps * rows


def _record(condition, phrase, kind, cons, prompt, text, tokens) -> dict:
    results = verify(text, cons)
    return {"condition": condition, "phrasing": phrase, "kind": kind, "prompt": prompt,
            "text": text, "tokens": tokens, "passed": all(r.passed for r in results),
            "detail": "; ".join(r.detail for r in results),
            "degenerate": degenerate_reasons(text, prompt)}  # fmt: skip


def _quality(persona, records: list[dict], plain: list[list[int]], prompts: list[str]) -> None:
    """Relevance and base NLL per token for each distinct reply (scored once)."""
    host = persona.host
    unique = list(dict.fromkeys((r["prompt"], r["text"]) for r in records))
    related = relevance(persona.embedder.encode, [p for p, _ in unique], [t for _, t in unique])
    prompt_ids = dict(zip(prompts, plain))
    reply_ids = [host.tokenizer.encode(t, add_special_tokens=False) for _, t in unique]
    logp = score_replies(host.model, [prompt_ids[p] for p, _ in unique], reply_ids,
                         pad_id=host.tokenizer.pad_token_id or 0)  # fmt: skip
    score = {key: (float(r), -float(lp)) for key, r, lp in zip(unique, related, logp)}
    for record in records:
        record["relevance"], record["nll"] = score[(record["prompt"], record["text"])]


def _summarise(host, config, records: list[dict], timing: dict) -> RulesEvalResult:
    result = RulesEvalResult(model=host.name, config=asdict(config), rows=records)
    for condition in CONDITIONS:
        rows = [r for r in records if r["condition"] == condition]
        if condition == "no rule":  # quality of the plain replies, once per prompt
            quality_rows = list({r["prompt"]: r for r in rows}.values())
        else:
            quality_rows = rows
        nll = [r["nll"] for r in quality_rows if np.isfinite(r["nll"])]
        t = timing[condition]
        result.conditions[condition] = {
            "compliance": float(np.mean([r["passed"] for r in rows])),
            "n": len(rows),
            "degenerate_rate": float(np.mean([bool(r["degenerate"]) for r in quality_rows])),
            "nll_per_token": float(np.mean(nll)) if nll else None,
            "relevance": float(np.mean([r["relevance"] for r in quality_rows])),
            "tokens_per_s": t["tokens"] / t["seconds"] if t["seconds"] else None,
            "row_steps_per_s": t["row_steps"] / t["seconds"] if t["seconds"] else None,
            **t,
        }
    for kind in dict.fromkeys(r["kind"] for r in records):
        result.per_type[kind] = {c: float(np.mean([r["passed"] for r in records
                                                   if r["kind"] == kind and r["condition"] == c]))
                                 for c in CONDITIONS}  # fmt: skip
    result.targets = _targets(result)
    return result


def _targets(result: RulesEvalResult) -> dict:
    """The issue's bars, each with its value and whether it is met."""
    po, en = result.conditions["prompt only"], result.conditions["enforced"]
    worst = min(v["enforced"] for v in result.per_type.values())
    speed = (en["tokens_per_s"] or 0) / (po["tokens_per_s"] or 1)  # emitted tokens, as asked
    return {
        "min_enforced_compliance": {"value": worst, "target": 0.95, "met": worst >= 0.95},
        "degenerate_rate_delta": {"value": en["degenerate_rate"] - po["degenerate_rate"],
                                  "target": 0.01,
                                  "met": en["degenerate_rate"] <= po["degenerate_rate"] + 0.01},
        "relevance_delta": {"value": en["relevance"] - po["relevance"], "target": -0.03,
                            "met": en["relevance"] >= po["relevance"] - 0.03},
        "speed_ratio": {"value": speed, "target": 0.8, "met": speed >= 0.8},
    }  # fmt: skip


def plot_rules_eval(result: RulesEvalResult, path: str | Path) -> Path:
    """Compliance per constraint type under each condition, and the quality beside it."""
    import matplotlib.pyplot as plt

    from persona_sdk.evals.plots import _save, png_path

    path = png_path(path)
    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 5), width_ratios=(3, 1.3))
    kinds = list(result.per_type)
    x = np.arange(len(kinds))
    for k, condition in enumerate(CONDITIONS):
        values = [result.per_type[kind][condition] for kind in kinds]
        left.bar(x + (k - 1) * 0.27, values, 0.27, label=condition)
    left.axhline(0.95, color="black", linestyle="--", linewidth=1, label="target 0.95")
    left.set_xticks(x, [kind.replace("_", " ") for kind in kinds], rotation=45, ha="right")
    left.set(ylabel="compliance", ylim=(0, 1.05), title="Rule compliance by constraint type")
    left.legend(fontsize=8, loc="lower left")
    metrics = ("degenerate_rate", "relevance", "nll_per_token")
    labels = ("degenerate", "relevance", "NLL/token ÷ 5")
    y = np.arange(len(metrics))
    for k, condition in enumerate(CONDITIONS):
        c = result.conditions[condition]
        values = [c["degenerate_rate"], c["relevance"], (c["nll_per_token"] or 0) / 5]
        right.barh(y + (k - 1) * 0.27, values, 0.27, label=condition)
    speed = result.targets["speed_ratio"]["value"]
    right.set_yticks(y, labels)
    right.set(title=f"Quality; enforced speed ×{speed:.2f}")
    right.legend(fontsize=8)
    return _save(figure, path)
