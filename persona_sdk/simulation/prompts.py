"""The chat prompts simulated users are served: templates × topics, tagged by category.

Deterministic data; :mod:`persona_sdk.simulation.users` re-exports :data:`PROMPTS`,
:func:`make_prompts` and :func:`split_prompts`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Prompt:
    """One chat prompt and the kind of request it is."""

    text: str
    category: str

    def __str__(self) -> str:
        return self.text


def _fill(category: str, templates: list[str], topics: list[str]) -> list[Prompt]:
    return [Prompt(t.format(x=x), category) for t in templates for x in topics]


def _pairs(category: str, templates: list[str], pairs: list[tuple[str, str]]) -> list[Prompt]:
    return [Prompt(t.format(a=a, b=b), category) for t in templates for a, b in pairs]


_EMAIL = _pairs(
    "email",
    [
        "Write an email to {a} about {b}.",
        "Draft a short message to {a} regarding {b}.",
    ],
    [
        (who, what)
        for who in ("my manager", "a client", "my landlord", "the whole team", "a professor")
        for what in (
            "a project delay",
            "the quarterly budget",
            "a schedule change",
            "a refund request",
            "taking next Friday off",
        )
    ],
)
_EXPLAIN = _fill(
    "explanation",
    [
        "Explain how {x} works.",
        "What is {x}, in plain terms?",
        "Why does {x} matter?",
        "Can you explain {x} to a beginner?",
    ],
    [
        "photosynthesis",
        "compound interest",
        "a neural network",
        "inflation",
        "vaccination",
        "public-key encryption",
        "the greenhouse effect",
        "a mortgage",
        "the immune system",
        "blockchain",
        "supply and demand",
        "gravity",
        "sleep",
        "a hash table",
        "the stock market",
    ],
)
SUMMARY_PHRASES = _fill(
    "summary",
    [
        "Summarize {x}.",
        "Give me a short summary of {x}.",
        "What are the key points of {x}?",
    ],
    [
        "the plot of Hamlet",
        "the causes of World War I",
        "the theory of evolution",
        "the French Revolution",
        "the book Pride and Prejudice",
        "the history of the internet",
        "the Paris climate agreement",
        "how the moon landing happened",
        "the main ideas of stoicism",
        "the industrial revolution",
        "the plot of The Odyssey",
        "the rise of social media",
    ],
)
_ADVICE = _fill(
    "advice",
    [
        "How can I {x}?",
        "Any tips to {x}?",
        "I'm struggling to {x}. What should I do?",
    ],
    [
        "sleep better",
        "save more money each month",
        "stop procrastinating",
        "get better at public speaking",
        "eat healthier on a budget",
        "make friends in a new city",
        "prepare for a job interview",
        "learn a new language",
        "start running",
        "deal with stress at work",
        "keep my houseplants alive",
        "negotiate a higher salary",
        "stay focused while working from home",
        "read more books",
    ],
)
_CODE = _pairs(
    "code",
    ["How do I {a} in {b}?"],
    [
        (task, lang)
        for task in (
            "reverse a list",
            "read a CSV file",
            "sort a dictionary by value",
            "remove duplicates from a list",
            "parse JSON",
            "make an HTTP request",
            "write a unit test",
            "handle exceptions",
            "format a date",
            "merge two sorted lists",
        )
        for lang in ("Python", "JavaScript", "Go", "Rust")
    ],
) + _fill(
    "code",
    ["Why am I getting {x}?", "How do I fix {x}?"],
    [
        "a KeyError in Python",
        "'undefined is not a function' in JavaScript",
        "a segmentation fault in C",
        "a merge conflict in git",
        "a CORS error in my web app",
        "an off-by-one error in my loop",
    ],
)
_STORY = _fill(
    "story",
    [
        "Write a short story about {x}.",
        "Write a poem about {x}.",
        "Tell me a bedtime story about {x}.",
    ],
    [
        "a lighthouse keeper",
        "a robot learning to paint",
        "a lost cat finding its way home",
        "the first day of spring",
        "a dragon who is afraid of fire",
        "two friends on a road trip",
        "a city under the sea",
        "an old clock that runs backwards",
        "a girl who can talk to trees",
        "a chef who loses his sense of taste",
        "the last bookstore on earth",
        "a snowman in summer",
    ],
)
_PLANNING = _pairs(
    "planning",
    ["Plan a {a} trip to {b}."],
    [
        (days, place)
        for days in ("weekend", "one-week", "two-week")
        for place in (
            "Japan",
            "Italy",
            "Iceland",
            "Mexico City",
            "the Scottish Highlands",
            "New York",
            "Kenya",
            "Portugal",
        )
    ],
) + _fill(
    "planning",
    ["Help me plan {x}.", "Make a schedule for {x}."],
    [
        "a birthday party for a ten-year-old",
        "a study week before my exams",
        "a small wedding",
        "moving to a new apartment",
        "a team offsite",
        "training for a half marathon",
        "a home renovation",
        "launching a small online shop",
    ],
)
_COMPARISON = _pairs(
    "comparison",
    [
        "Compare {a} and {b}.",
        "Should I choose {a} or {b}?",
        "What is the difference between {a} and {b}?",
    ],
    [
        ("renting", "buying a home"),
        ("Python", "JavaScript"),
        ("an electric car", "a hybrid"),
        ("index funds", "individual stocks"),
        ("a Mac", "a Windows laptop"),
        ("coffee", "tea"),
        ("running", "cycling"),
        ("SQL", "NoSQL databases"),
        ("a gap year", "going straight to university"),
        ("freelancing", "a full-time job"),
        ("Kindle", "paper books"),
        ("yoga", "pilates"),
    ],
)
_COOKING = _fill(
    "cooking",
    ["How do I make {x}?", "Give me a simple recipe for {x}."],
    [
        "banana bread",
        "a vegetable curry",
        "homemade pizza dough",
        "a quick weeknight pasta",
        "pancakes",
        "a lentil soup",
        "guacamole",
        "a stir-fry",
        "overnight oats",
        "a chocolate cake",
    ],
)
_RECOMMEND = _fill(
    "recommendation",
    ["Recommend {x}.", "What are some good {x}?"],
    [
        "books for learning about history",
        "podcasts about science",
        "board games for a family night",
        "hobbies to pick up this winter",
        "movies for a rainy afternoon",
        "apps for learning to code",
        "gifts for a coworker",
        "day trips near a big city",
    ],
)

PROMPTS: tuple[Prompt, ...] = tuple(
    dict.fromkeys(
        _EMAIL
        + _EXPLAIN
        + SUMMARY_PHRASES
        + _ADVICE
        + _CODE
        + _STORY
        + _PLANNING
        + _COMPARISON
        + _COOKING
        + _RECOMMEND
    )
)
CATEGORIES: tuple[str, ...] = tuple(dict.fromkeys(p.category for p in PROMPTS))


def make_prompts(n: int | None = None, seed: int = 0) -> list[Prompt]:
    """``n`` distinct prompts drawn without replacement (all of them, shuffled, when ``n`` is
    None). Raises ``ValueError`` when more prompts are asked for than exist."""
    if n is None:
        n = len(PROMPTS)
    if not 0 <= n <= len(PROMPTS):
        raise ValueError(f"n must be between 0 and {len(PROMPTS)}, got {n}")
    order = np.random.default_rng(seed).permutation(len(PROMPTS))[:n]
    return [PROMPTS[i] for i in order]


def split_prompts(
    prompts: list[Prompt], held_out_fraction: float, seed: int = 0
) -> tuple[list[Prompt], list[Prompt]]:
    """Disjoint ``(train, held_out)`` lists; ``held_out`` holds ``round(fraction · n)`` prompts.
    Duplicates in ``prompts`` are dropped first so that no text lands on both sides."""
    if not 0.0 <= held_out_fraction <= 1.0:
        raise ValueError(f"held_out_fraction must be in [0, 1], got {held_out_fraction}")
    unique = list(dict.fromkeys(prompts))
    n_held = round(held_out_fraction * len(unique))
    held = set(np.random.default_rng(seed).permutation(len(unique))[:n_held].tolist())
    train = [p for i, p in enumerate(unique) if i not in held]
    held_out = [p for i, p in enumerate(unique) if i in held]
    return train, held_out
