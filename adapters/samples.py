"""On-policy replies for ``build-basis --samples-per-prompt N``: the base model's own replies
to each train prompt, so a direction's pairs are texts the base model really writes.

A style-instructed pool spans wider styles, but its best replies under a content direction
are often ones the base model would never write unprompted. Pairs of the model's own
samples (best vs worst of N) are the alternative; on the embedded model they did not beat
the pool for direction 3 (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np

from persona_sdk.adapters.config import BuildConfig
from persona_sdk.adapters.dpo import prompt_ids
from persona_sdk.adapters.manifest import model_fingerprint
from persona_sdk.config import DEFAULT_SYSTEM_PROMPT
from persona_sdk.decoding.models import ModelHost
from persona_sdk.errors import AdapterError
from persona_sdk.reward.features import Featurizer
from persona_sdk.reward.pool import FeaturizedPool, PoolEntry, finish_reply

SAMPLES_FILE = ".samples.jsonl"  # kept in the build folder: later directions reuse it
PROMPTS_PER_BATCH = 8


def _settings(config: BuildConfig, host: ModelHost) -> dict:
    """The cache key: samples of another model, prompt or decoding are not reused."""
    return {"model": host.name, "fingerprint": model_fingerprint(host.model),
            "system_prompt": DEFAULT_SYSTEM_PROMPT, "per_prompt": config.samples_per_prompt,
            "temperature": config.sample_temperature, "top_p": config.sample_top_p,
            "max_new_tokens": config.sample_max_new_tokens}  # fmt: skip


def _cached(path: Path, settings: dict) -> dict[str, list[str]]:
    """Prompt -> replies already sampled under the same settings (a cut last line is redone)."""
    done: dict[str, list[str]] = {}
    if not path.exists():
        return done
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if row.get("settings") == settings:
            done[row["prompt"]] = row["replies"]
    return done


def _ends_with_newline(path: Path) -> bool:
    """True for an empty file or one whose last write finished its line."""
    with path.open("rb") as f:
        if f.seek(0, 2) == 0:
            return True
        f.seek(-1, 2)
        return f.read(1) == b"\n"


def sample_prompts(prompts: list[str], limit: int | None, seed: int) -> list[str]:
    """The train prompts to sample, in a seeded order so a resumed build picks the same."""
    order = np.random.default_rng(seed).permutation(len(prompts))
    return [prompts[i] for i in order[: limit or len(prompts)]]


def sample_world(
    host: ModelHost,
    featurizer: Featurizer,
    prompts: list[str],
    config: BuildConfig,
    folder: Path,
    progress=None,
) -> FeaturizedPool:
    """``config.samples_per_prompt`` sampled replies per prompt, featurized; resumable, as
    each batch of prompts is appended to ``folder/.samples.jsonl`` before the next starts."""
    from persona_sdk.decoding.loop import BatchGeneration, SamplingParams

    settings = _settings(config, host)
    path = Path(folder) / SAMPLES_FILE
    done = _cached(path, settings)
    todo = [p for p in prompts if p not in done]
    task = None
    if progress is not None and todo:
        task = progress.add_task("sampling base replies", total=len(prompts),
                                 completed=len(prompts) - len(todo))  # fmt: skip
    n = config.samples_per_prompt
    with path.open("a", encoding="utf-8") as handle:
        if not _ends_with_newline(path):
            handle.write("\n")  # a line cut by a kill stays on its own and is ignored
        for start in range(0, len(todo), PROMPTS_PER_BATCH):
            batch = todo[start : start + PROMPTS_PER_BATCH]
            ids = [prompt_ids(host, p) for p in batch]
            params = SamplingParams(
                config.sample_max_new_tokens,
                config.sample_temperature,
                config.sample_top_p,
                # a batch's seed follows its prompts: a run resumed at a batch boundary
                # samples what an uninterrupted one would have
                seed=config.dpo.seed + zlib.crc32("\n".join(batch).encode()),
            )
            rows = BatchGeneration(host, [i for i in ids for _ in range(n)], params).run()
            lines = []
            for j, prompt in enumerate(batch):
                texts = [finish_reply(r.text) for r in rows[j * n : (j + 1) * n]]
                done[prompt] = list(dict.fromkeys(t for t in texts if t))
                row = {"prompt": prompt, "replies": done[prompt], "settings": settings}
                lines.append(json.dumps(row))  # ASCII, so a cut line stays decodable
            handle.write("".join(line + "\n" for line in lines))
            handle.flush()
            if task is not None:
                progress.advance(task, len(batch))
    if not any(len(done[p]) >= 2 for p in prompts):
        raise AdapterError("no prompt got two distinct usable samples: raise the temperature "
                           "or sample_max_new_tokens")  # fmt: skip
    entries = [PoolEntry(p, "", text, "base-sample") for p in prompts for text in done[p]]
    return FeaturizedPool.build(featurizer, entries)
