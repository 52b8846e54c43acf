"""Builds ``persona_sdk/data/probe_pairs.json``: the minimal pairs a profile probes the reward
model with (:mod:`persona_sdk.reward.profile`).

Offline only, like the pool builder: the runtime reads the JSON and never imports this. Each
probe is one shipped pool reply with and without one feature, made by the simulated editor
(or, for numbers, the pool's own "add:numbers" reply and its base); sentence length,
technical words and echoing the request have no editor transform, so their probes are
written here by hand. Every probe is checked to differ on its measure in the right direction.

Run: ``python -m persona_sdk.simulation.probe_builder``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from persona_sdk.config import package_data
from persona_sdk.decoding.embedder import load_embedder
from persona_sdk.reward.features import EmbeddingCache, EmbeddingStyleFeaturizer
from persona_sdk.reward.pool import PoolEntry, load_pool
from persona_sdk.reward.profile import (
    MEASURES,
    MIN_DELTA,
    PROBE_EMBEDDINGS_FILE,
    PROBE_FILE,
    Probe,
    measure_matrix,
)
from persona_sdk.simulation.editor import EDITABLE_DIRECTIONS, edit_toward

PER_MEASURE = 6
BASE_STYLES = ("model:plain", "model:formal", "model:teacher", "model:brief", "model:casual")
MAX_WORDS = 120  # short probes keep the pair minimal and cheap to embed

# (prompt, more, less) written by hand for measures the editor cannot change alone.
HAND_WRITTEN: dict[str, list[tuple[str, str, str]]] = {
    "sentence_length": [
        (
            "How can I sleep better?",
            "Keep a regular bedtime, dim the lights an hour before bed, and leave your phone in "
            "another room so that your mind can slow down before you sleep.",
            "Keep a regular bedtime. Dim the lights an hour before bed. Leave your phone in "
            "another room. Let your mind slow down.",
        ),
        (
            "What is compound interest?",
            "Compound interest is interest you earn on both the money you saved and the interest "
            "it has already earned, so the balance grows faster every year.",
            "Compound interest is interest on interest. You earn it on your savings. You also earn "
            "it on past interest. The balance grows faster each year.",
        ),
        (
            "How do I start running?",
            "Start with short runs that alternate with walking, add a few minutes each week, and "
            "rest between days so that your legs can adapt to the new load.",
            "Start with short runs. Alternate them with walking. Add a few minutes each week. Rest "
            "between days so your legs adapt.",
        ),
        (
            "Why do leaves change colour in autumn?",
            "Leaves change colour because trees stop making green chlorophyll as the days shorten, "
            "which lets the yellow and orange pigments underneath show through.",
            "Leaves change colour in autumn. Trees stop making green chlorophyll. The days get "
            "shorter. Yellow and orange pigments show through.",
        ),
    ],
    "long_words": [
        (
            "How do vaccines work?",
            "Vaccines stimulate immunological memory: antigen presentation activates lymphocytes "
            "that produce neutralizing antibodies.",
            "Vaccines train your body: they show it a harmless piece of a germ so it learns to "
            "make the right antibodies.",
        ),
        (
            "How does a fridge keep food cold?",
            "A refrigerator circulates refrigerant through a compressor and evaporator, "
            "transferring thermal energy outside the insulated compartment.",
            "A fridge pumps a cold liquid through pipes inside, which soaks up heat and carries it "
            "out the back.",
        ),
        (
            "What is inflation?",
            "Inflation is a generalized, persistent increase in consumer prices that diminishes "
            "purchasing power across the economy.",
            "Inflation is when prices go up over time, so the same money buys you less than "
            "before.",
        ),
        (
            "Why is the sky blue?",
            "Atmospheric molecules preferentially scatter shorter wavelengths, a phenomenon called "
            "Rayleigh scattering, so blue illumination dominates.",
            "Air scatters blue light more than red light, so blue light reaches your eyes from all "
            "over the sky.",
        ),
    ],
    "prompt_overlap": [
        (
            "How do I keep a sourdough starter alive?",
            "To keep a sourdough starter alive, feed the starter flour and water daily and keep it "
            "warm.",
            "Give it fresh flour and water every day and store the jar somewhere warm.",
        ),
        (
            "What should I pack for a weekend hiking trip?",
            "For a weekend hiking trip, pack water, layers, snacks, a map and a first aid kit.",
            "Bring water, layers, snacks, a map and a first aid kit.",
        ),
        (
            "How can I get better at public speaking?",
            "To get better at public speaking, practise speaking in public often, record yourself "
            "and ask for feedback.",
            "Rehearse often, record yourself and ask friends what they noticed.",
        ),
        (
            "How do I ask my landlord to fix the heating?",
            "Ask your landlord to fix the heating in writing: describe the heating problem and ask "
            "for a repair date.",
            "Send a short written note that describes the problem and requests a repair date.",
        ),
    ],
}


def _differs(probe: Probe) -> bool:
    """True when the probe's replies differ on its measure, more on the ``more`` side."""
    j = MEASURES.index(probe.measure)
    rows = measure_matrix([probe.prompt] * 2, [probe.more, probe.less])
    return bool(rows[0, j] - rows[1, j] >= MIN_DELTA[probe.measure])


def _bases(entries: list[PoolEntry]) -> list[PoolEntry]:
    """Short model replies, one style after another, prompts in a fixed shuffled order."""
    prompts = sorted({e.prompt for e in entries})
    order = {p: i for i, p in enumerate(np.random.default_rng(23).permutation(prompts))}
    short = [e for e in entries if e.source in BASE_STYLES and len(e.text.split()) <= MAX_WORDS]
    return sorted(short, key=lambda e: (order[e.prompt], BASE_STYLES.index(e.source)))


def _edited(measure: str, bases: list[PoolEntry]) -> list[Probe]:
    """Probes made by the editor: a base and its edit toward more (or, lacking that, less)."""
    direction = 1 if 1 in EDITABLE_DIRECTIONS[measure] else -1
    out, used = [], set()
    for e in bases:
        if e.prompt in used:
            continue
        edited = edit_toward(e.text, measure, direction)
        more, less = (edited, e.text) if direction > 0 else (e.text, edited)
        probe = Probe(measure, e.prompt, more, less)
        if edited != e.text and _differs(probe):
            out.append(probe)
            used.add(e.prompt)
        if len(out) == PER_MEASURE:
            break
    return out


def _added_numbers(entries: list[PoolEntry]) -> list[Probe]:
    """The pool's replies with a sentence of numbers added, against the reply they extend."""
    base = {(e.prompt, e.source): e.text for e in entries}
    out = []
    for e in entries:
        source = "model:" + e.source.partition("<")[2]
        if e.source.startswith("add:numbers<") and (e.prompt, source) in base:
            probe = Probe("numbers", e.prompt, e.text, base[(e.prompt, source)])
            if len(probe.less.split()) <= MAX_WORDS and _differs(probe):
                out.append(probe)
    return out[:PER_MEASURE]


def build_probes() -> list[Probe]:
    """Every measure's probes, checked."""
    entries = load_pool()
    bases = _bases(entries)
    probes: list[Probe] = []
    for measure in MEASURES:
        if measure in HAND_WRITTEN:
            found = [Probe(measure, *row) for row in HAND_WRITTEN[measure]]
        elif measure == "numbers":
            found = _added_numbers(entries)
        elif measure in EDITABLE_DIRECTIONS:
            found = _edited(measure, bases)
        else:
            found = []
        bad = [p for p in found if not _differs(p)]
        if bad:
            raise ValueError(f"probe does not differ on {measure}: {bad[0]}")
        probes += found
    return probes


def main(path: Path | None = None) -> Path:
    """Write the probes and, beside them, the embedded MiniLM's vectors of every text they
    make the featurizer embed (so a profile costs no embedding)."""
    path = path or package_data(PROBE_FILE)
    probes = build_probes()
    rows = [p.__dict__ for p in probes]
    path.write_text(json.dumps(rows, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    cache = EmbeddingCache(load_embedder(None, "cpu"))
    EmbeddingStyleFeaturizer(cache.embedder, cache).features(
        [p.prompt for p in probes] * 2, [p.more for p in probes] + [p.less for p in probes]
    )
    cache.save(path.with_name(PROBE_EMBEDDINGS_FILE))
    return path


if __name__ == "__main__":
    print(main())
