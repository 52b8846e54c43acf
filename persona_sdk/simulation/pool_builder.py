"""The shipped response pool: several replies in varied styles to every simulated prompt.

Replies come from two sources, both recorded per reply:

* ``model:<style>``: the embedded model answering under a style instruction (:data:`STYLES`);
* ``edit:<attribute><+|->``: a written style transform of one of those replies
  (:func:`persona_sdk.simulation.editor.edit_toward`), so that clean contrasts exist too.

Building it takes the embedded model about half an hour on two CPU cores, so :func:`build_pool`
appends finished batches to a JSONL file and skips what is already there: kill it and rerun.
``python -m persona_sdk.simulation.pool_builder OUT.jsonl`` builds;
:func:`persona_sdk.reward.pool.load_pool` reads the shipped gzip from package data.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import re
from collections.abc import Iterable
from pathlib import Path

from persona_sdk.config import package_data
from persona_sdk.reward.pool import (
    POOL_EMBEDDINGS_FILE,
    POOL_FILE,
    PoolEntry,
    finish_reply,
    read_pool,
)
from persona_sdk.simulation.editor import edit_toward
from persona_sdk.simulation.prompts import PROMPTS, Prompt, make_prompts

# Style instructions added after the request (a 135M model follows them there far better than
# in a system prompt; "" leaves the request alone).
STYLES: dict[str, str] = {
    "plain": "",
    "brief": "Answer in one or two short sentences.",
    "bullets": "Answer as a bulleted list of short points.",
    "steps": "Start with a short heading, then give numbered steps.",
    "teacher": "Explain with an analogy and a concrete example. Talk to the reader as 'you'.",
    "warm": "Be warm, friendly and encouraging. Use emoji and exclamation marks.",
    "formal": "Be formal and precise. Mention costs, numbers and any caveats.",
    "nature": "Use imagery from nature. End with a one-line summary starting 'In short,'.",
    "casual": "Write casually, like texting a friend, and end by asking me a question.",
}
# Written transforms of model replies, as (edits, source style): clean contrasts that a weak
# model rarely produces on request (short versions, emoji, greetings and sign-offs, lists).
TRANSFORMS: tuple[tuple[str, str], ...] = (
    ("length-", "plain"),
    ("length-", "teacher"),
    ("bullets+", "plain"),
    ("numbered+", "formal"),
    ("emoji+ exclamations+", "warm"),
    ("greeting+ signoff+", "brief"),
    ("questions+", "teacher"),
    ("casual+", "formal"),
    ("casual- exclamations-", "casual"),
    ("caveats+", "bullets"),
    ("summary+", "steps"),
    ("length- emoji+", "nature"),
)


# Written content additions: a sentence that carries one attribute the style features cannot
# see, added to one model reply per prompt (the variant and the source vary by prompt), so the
# pool has clear contrasts on those attributes too.
CONTENT: dict[str, tuple[str, ...]] = {
    "analogies": (
        "Think of it like tending a garden: small, steady care adds up.",
        "Imagine it as a map: once you see the whole route, each step makes sense.",
        "It works a bit like a recipe, where order and timing matter as much as ingredients.",
    ),
    "examples": (
        "For example, someone might start with one small change this week and build on it.",
        "For instance, a ten-minute timer each morning is a simple way to begin.",
        "As an example, many people write the plan down and check it every Friday.",
    ),
    "empathy": (
        "I understand this can feel overwhelming, and that is completely normal.",
        "That sounds stressful, and it is understandable to feel unsure.",
        "It's normal to find this hard at first.",
    ),
    "warmth": (
        "I hope this helps, and good luck!",
        "I'm happy to help, and I hope you enjoy the process.",
        "Wonderful question; I'm glad you asked.",
    ),
    "money": (
        "Keep an eye on the budget: costs add up, so compare prices before you pay.",
        "Check the cost first, since the cheaper option often works just as well.",
        "Plan the money side too: set a budget and track what you spend.",
    ),
    "nature": (
        "Progress grows slowly, the way a seed needs sun and rain.",
        "Steady effort shapes things the way a river shapes its valley over the seasons.",
        "Many small roots hold the soil together, and small habits work the same way.",
    ),
    "numbers": (
        "About 70% of people see progress within 2 to 3 weeks.",
        "A good target is 20 minutes a day, 5 days a week.",
        "Roughly 3 out of 4 attempts succeed by the second try.",
    ),
    "second_person": (
        "You can go at your own pace, and you decide what works for you.",
        "Your situation is your own, so adapt this to what you need.",
        "If you try it, you'll quickly see what suits you.",
    ),
}


def _transforms(prompt: Prompt, replies: dict[str, str]) -> list[PoolEntry]:
    out = []
    for edits, style in TRANSFORMS:
        source = replies.get(style)
        if source is None:
            continue
        edited = source
        for edit in edits.split():
            edited = edit_toward(edited, edit[:-1], 1 if edit[-1] == "+" else -1)
        if edited.strip() and edited != source:
            out.append(PoolEntry(prompt.text, prompt.category, edited, f"edit:{edits}<{style}"))
    styles = sorted(replies)
    for k, (attribute, sentences) in enumerate(CONTENT.items()):
        pick = int(hashlib.sha256(f"{prompt.text}|{attribute}".encode()).hexdigest(), 16)
        style = styles[(pick + k) % len(styles)]
        sentence = sentences[pick % len(sentences)]
        source = replies[style]
        added = f"{sentence} {source}" if attribute == "empathy" else f"{source}\n\n{sentence}"
        out.append(PoolEntry(prompt.text, prompt.category, added, f"add:{attribute}<{style}"))
    return out


def _done(path: Path) -> set[str]:
    if not path.exists():
        return set()
    done = set()
    for line in path.read_text().splitlines():
        try:
            done.add(json.loads(line)["prompt"])
        except (ValueError, KeyError):  # a line cut by a kill: that prompt is redone
            continue
    return done


def build_pool(
    out: Path,
    prompts: Iterable[Prompt] = PROMPTS,
    model: str | None = None,
    prompts_per_batch: int = 4,
    max_new_tokens: int = 110,
    seed: int = 0,
    styles: tuple[str, ...] = tuple(STYLES),
) -> int:
    """Append the replies of every prompt not yet in ``out``; returns the prompts added.

    All of one prompt's replies are written in one ``write`` so a kill never leaves half a
    prompt behind (a cut last line is ignored and redone).
    """
    from rich.progress import Progress

    from persona_sdk.decoding.loop import BatchGeneration, SamplingParams
    from persona_sdk.decoding.models import load_model

    out = Path(out)
    done = _done(out)
    todo = [p for p in prompts if p.text not in done]
    if not todo:
        return 0
    host = load_model(model)
    params = SamplingParams(max_new_tokens, temperature=0.7, top_p=0.9, seed=seed)
    with Progress() as progress, out.open("a") as handle:
        task = progress.add_task("response pool", total=len(todo))
        for start in range(0, len(todo), prompts_per_batch):
            batch = todo[start : start + prompts_per_batch]
            keys = [(p, style) for p in batch for style in styles]
            ids = []
            for prompt, style in keys:
                request = f"{prompt.text}\n\n{STYLES[style]}".strip()
                ids.append(host.chat_ids([{"role": "user", "content": request}]))
            rows = BatchGeneration(host, ids, params).run()
            lines = []
            for prompt in batch:
                replies = {
                    style: finish_reply(row.text)
                    for (p, style), row in zip(keys, rows)
                    if p is prompt and finish_reply(row.text)
                }
                entries = [
                    PoolEntry(prompt.text, prompt.category, text, f"model:{style}")
                    for style, text in replies.items()
                ]
                lines += [json.dumps(e.__dict__, ensure_ascii=False) for e in entries]
            handle.write("".join(line + "\n" for line in lines))
            handle.flush()
            progress.advance(task, len(batch))
    return len(todo)


_SPACES = re.compile(r"[ \t]+\n")


def with_transforms(entries: list[PoolEntry]) -> list[PoolEntry]:
    """``entries`` plus the written :data:`TRANSFORMS` of each prompt's model replies."""
    replies: dict[str, dict[str, str]] = {}
    prompts: dict[str, Prompt] = {}
    for e in entries:
        if e.source.startswith("model:"):
            replies.setdefault(e.prompt, {})[e.source[len("model:") :]] = e.text
            prompts[e.prompt] = Prompt(e.prompt, e.category)
    out = list(entries)
    for text, prompt in prompts.items():
        out += _transforms(prompt, replies[text])
    return out


def compress_pool(source: Path, target: Path) -> int:
    """Gzip the model replies of ``source`` and their transforms into ``target``,
    deterministically (mtime 0, prompts in order); returns entries written."""
    entries = with_transforms([e for e in read_pool(source) if e.source.startswith("model:")])
    order = {p.text: i for i, p in enumerate(PROMPTS)}
    entries.sort(key=lambda e: order.get(e.prompt, len(order)))
    with gzip.GzipFile(target, "wb", mtime=0) as handle:
        for e in entries:
            record = dict(e.__dict__, text=_SPACES.sub("\n", e.text))
            handle.write((json.dumps(record, ensure_ascii=False) + "\n").encode())
    return len(entries)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Build the simulated response pool.")
    parser.add_argument("out", type=Path, help="JSONL file to append to (resumable)")
    parser.add_argument("--model", default=None, help="HF id or path; default the embedded model")
    parser.add_argument("--prompts", type=int, default=None, help="only the first N prompts")
    parser.add_argument("--max-new-tokens", type=int, default=110)
    parser.add_argument("--compress", type=Path, default=None, help="then gzip into this file")
    parser.add_argument(
        "--ship",
        action="store_true",
        help="then write the package data: the gzipped pool, its embeddings, the default basis",
    )
    parser.add_argument("--no-generate", action="store_true", help="skip generation")
    parser.add_argument(
        "--styles", default=",".join(STYLES), help="comma-separated STYLES to generate"
    )
    args = parser.parse_args(argv)
    prompts = make_prompts(args.prompts, seed=0)  # shuffled: a partial pool covers every category
    if not args.no_generate:
        styles = tuple(s for s in args.styles.split(",") if s in STYLES)
        added = build_pool(
            args.out, prompts, args.model, max_new_tokens=args.max_new_tokens, styles=styles
        )
        print(f"added {added} prompts to {args.out}")
    if args.compress:
        print(f"wrote {compress_pool(args.out, args.compress)} entries to {args.compress}")
    if args.ship:
        ship_package_data(args.out)


def ship_package_data(raw: Path) -> None:
    """Write ``persona_sdk/data``: the pool, the embeddings of its texts and the default
    basis fit on the simulated population (the exact command is in benchmarks/RESULTS.md)."""
    from rich.progress import Progress

    from persona_sdk.decoding.embedder import load_embedder
    from persona_sdk.reward.features import (
        EmbeddingCache,
        EmbeddingStyleFeaturizer,
        sentences,
        text_key,
    )
    from persona_sdk.simulation.world import RewardWorld, fit_default_basis

    data = package_data()
    data.mkdir(exist_ok=True)
    print(f"wrote {compress_pool(raw, data / POOL_FILE)} entries to {data / POOL_FILE}")
    embedder = load_embedder()
    featurizer = EmbeddingStyleFeaturizer(embedder)  # reuses the previous file's vectors
    world = RewardWorld.build(featurizer, read_pool(data / POOL_FILE))
    needed = list(dict.fromkeys(world.texts + world.prompts))
    needed += list(dict.fromkeys(s for t in world.texts for s in sentences(t)))
    shipped = EmbeddingCache(embedder)  # only what this pool uses
    shipped.add([text_key(t) for t in needed], featurizer.cache.encode(needed))
    shipped.save(data / POOL_EMBEDDINGS_FILE)
    print(f"saved {len(shipped)} embeddings")
    with Progress() as progress:
        task = progress.add_task("default basis", total=300)
        basis = fit_default_basis(world, featurizer, progress=lambda n: progress.advance(task, n))
    basis.save(data / "default_basis.npz")
    print(f"default basis {basis.basis_id}: {', '.join(basis.axis_names)}")


if __name__ == "__main__":
    main()
