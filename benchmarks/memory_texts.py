"""Realistic, distinct short memory texts for bench_memory, generated combinatorially."""

from __future__ import annotations

import itertools
import random

import numpy as np

TOPICS = [
    "tax returns", "marathon training", "sourdough baking", "tomato gardening",
    "job interviews", "apartment hunting", "wedding planning", "home workouts",
    "learning Spanish", "credit card debt", "camping trips", "houseplants",
    "buying a used car", "retirement savings", "kids' birthday parties", "coffee brewing",
    "cycling routes", "film photography", "podcast editing", "board games", "meal prep",
    "dog training", "sleep habits", "public speaking", "chess openings", "bird watching",
    "vegetable soups", "budget travel in Japan", "kitchen renovation", "salary negotiation",
    "wine tasting", "yoga for beginners", "moving abroad", "freelance invoices",
    "mortgage refinancing", "piano practice", "skin care", "hiking in the Alps",
    "electric cars", "cat nutrition", "spreadsheet formulas", "museum visits",
    "family reunions", "running shoes", "jazz history", "climate news", "index funds",
    "knitting patterns", "smart home devices", "solar panels", "rock climbing",
    "home espresso machines", "vintage furniture", "aquarium fish", "beekeeping",
    "language exchange apps", "sailing lessons", "car insurance", "pottery classes",
    "school applications", "bathroom tiling", "astronomy for amateurs", "fermented foods",
    "city breaks in Italy",
]  # fmt: skip
INSTRUCTIONS = [
    "mention the total cost in euros", "give metric units first, imperial in brackets",
    "cite a source I can check myself", "suggest a cheaper alternative",
    "warn me about common mistakes", "recommend one option instead of several",
    "assume I am a complete beginner", "assume I already know the basics",
    "compare two options side by side", "include a rough time estimate",
    "tell me what to buy and where", "mention the best season for it", "use British spelling",
    "keep my budget of 500 dollars in mind", "suggest something I can do this weekend",
    "mention safety risks first", "prefer vegetarian options", "focus on options near Lisbon",
    "skip the history and background", "explain the reasoning behind each recommendation",
    "give me a fallback plan", "tell me which choice you would pick",
    "keep my two young kids in mind", "mention wheelchair accessibility",
    "avoid naming specific brands", "favour second-hand options", "highlight what is free",
    "remember that I work night shifts", "relate it to my engineering background",
    "point out the environmental impact", "mention what my partner, who is vegan, can eat",
    "assume I live in a small flat without a garden", "give prices for Portugal",
    "tell me the one thing to do first", "mention how to undo it if it goes wrong",
    "include what it costs per month", "warn me if it needs a permit",
    "remind me that I have a bad knee", "assume I only have weekends free",
    "suggest how to involve my teenage son", "mention any apps that help",
    "say what a typical beginner gets wrong", "tell me how long results take to show",
    "give me a realistic worst case", "favour options that need no car",
    "assume I have a very old laptop", "mention local Lisbon clubs or groups",
    "think about my lactose intolerance", "mention the quietest times to go",
    "tell me what I can skip", "suggest a small first experiment",
    "point out scams to watch for", "assume I am left-handed",
    "mention anything that is cheaper online", "use plain words, like you would with a friend",
    "tell me what experts disagree about", "give the answer in Celsius",
    "assume my German is better than my English", "mention what to do on a rainy day",
    "keep my fear of heights in mind", "consider my tight deadline this month",
    "remind me to check with my doctor when health is involved",
    "suggest how to track my progress", "mention what it is like in winter",
]  # fmt: skip
FAMILIES = [
    "When I ask about {topic}, {instr}.", "For anything involving {topic}, please {instr}.",
    "If the conversation turns to {topic}, {instr}.", "In answers about {topic}, always {instr}.",
    "Whenever {topic} comes up, {instr}.",
]  # fmt: skip
DOCUMENTS = [
    "emails to my manager", "messages to my landlord", "weeknight dinner ideas",
    "travel itineraries", "workout plans", "cover letters", "birthday card messages",
    "product reviews", "bedtime stories for my kids", "meeting summaries", "blog posts",
    "explanations of science news", "restaurant recommendations", "book recommendations",
    "monthly budget planning", "apology notes", "packing for trips", "shopping for electronics",
    "health worries", "school homework help",
]  # fmt: skip
ASKS = [
    "Can you help me with", "I need some help with", "Give me ideas for", "Draft",
    "What do you suggest for", "Help me plan", "Write", "I'm stuck on",
]  # fmt: skip


def shuffled(rng: random.Random, *lists: list[str]) -> list[tuple[str, ...]]:
    combos = list(itertools.product(*lists))
    rng.shuffle(combos)
    return combos


def rule_texts(count: int, rng: random.Random) -> list[str]:
    """Distinct rules, one per (topic, instruction) pair, none naming a style template
    (those would contradict or reinforce each other)."""
    from persona_sdk.memory.edits import classify_rule

    texts = []
    for topic, instr in shuffled(rng, TOPICS, INSTRUCTIONS):
        text = rng.choice(FAMILIES).format(topic=topic, instr=instr)
        if classify_rule(text) is None and len(text.split()) <= 30:
            texts.append(text)
        if len(texts) == count:
            return texts
    raise SystemExit(f"the text generator yields only {len(texts)} distinct rules, not {count}")


def distinct_by_meaning(texts: list[str], vectors: np.ndarray, count: int) -> list[str]:
    """The first ``count`` texts, skipping any within the duplicate threshold of a kept one."""
    from persona_sdk.config import MemoryConfig

    limit = MemoryConfig().duplicate_similarity - 0.01
    sims = vectors @ vectors.T
    kept: list[int] = []
    for i in range(len(texts)):
        if not kept or float(sims[i, kept].max()) < limit:
            kept.append(i)
            if len(kept) == count:
                return [texts[k] for k in kept]
    raise SystemExit(f"only {len(kept)} rules are distinct in meaning, not {count}")
