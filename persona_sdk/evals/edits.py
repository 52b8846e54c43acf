"""The edit-cost loop (after PRELUDE/CIPHER): simulated users edit replies, round by round.

Each round every simulated user gets a new prompt; the same prompt is answered under
three conditions in one batch:

- ``no_learning``: nothing is stored, the base model answers;
- ``rules_only``: every edit is fed back with ``add_edit``, and the rules it teaches are
  retrieved into later prompts;
- ``oracle``: the user's true preferences are given up front as stated rules.

The cost of a reply is the word-level Levenshtein distance to the user's edit of it.
Because the oracle gets the same model, ``(none − rules) / (none − oracle)`` measures how
much of the achievable gain memory captured, apart from how well the model follows rules.
"""

from __future__ import annotations

import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from persona_sdk.persona import Persona
from persona_sdk.simulation.users import edit_distance, make_population, make_prompts

CONDITIONS = ("no_learning", "rules_only", "oracle")


@dataclass
class EditEvalResult:
    """Per-round costs per condition, and the summary the issue asks for."""

    users: int
    rounds: int
    seed: int
    model: str
    cost: dict[str, list[list[int]]]  # condition -> round -> cost per user
    rules_learned: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def per_round(self, condition: str) -> list[int]:
        return [sum(costs) for costs in self.cost[condition]]

    def cumulative(self, condition: str) -> list[int]:
        total, out = 0, []
        for value in self.per_round(condition):
            total += value
            out.append(total)
        return out

    @property
    def totals(self) -> dict[str, int]:
        return {c: sum(self.per_round(c)) for c in CONDITIONS}

    @property
    def gap_closed(self) -> float | None:
        """(no learning − rules only) ÷ (no learning − oracle); None when there is no gap."""
        totals = self.totals
        gap = totals["no_learning"] - totals["oracle"]
        return None if gap <= 0 else (totals["no_learning"] - totals["rules_only"]) / gap

    def to_dict(self) -> dict:
        totals = self.totals
        return {
            "users": self.users,
            "rounds": self.rounds,
            "seed": self.seed,
            "model": self.model,
            "total_cost": totals,
            "rules_only_over_no_learning": totals["rules_only"] / max(totals["no_learning"], 1),
            "oracle_over_no_learning": totals["oracle"] / max(totals["no_learning"], 1),
            "gap_closed": self.gap_closed,
            "target_gap_closed>=0.5": (self.gap_closed or 0) >= 0.5,
            "cumulative": {c: self.cumulative(c) for c in CONDITIONS},
            "rules_learned": self.rules_learned,
            "seconds": round(self.seconds, 1),
        }


def run_edit_eval(
    users: int = 5,
    rounds: int = 20,
    *,
    seed: int = 0,
    max_new_tokens: int = 96,
    model: str | None = None,
    embedder: str | None = None,
    on_round: Callable[[int, EditEvalResult], None] | None = None,
) -> EditEvalResult:
    """Run the loop in a throwaway data dir and return the costs."""
    population = make_population(users, seed=seed, editable_only=True)
    prompts = make_prompts(max(rounds * users, 50), seed=seed)
    rng = random.Random(seed)
    schedule = [[rng.choice(prompts) for _ in population] for _ in range(rounds)]
    cost: dict[str, list[list[int]]] = {c: [] for c in CONDITIONS}
    started = time.perf_counter()
    with (
        tempfile.TemporaryDirectory(prefix="persona-eval-") as data,
        Persona.open(data, model=model, embedder=embedder) as persona,
    ):
        for sim in population:
            oracle = sim.oracle_rules()
            if oracle:
                persona.user(f"oracle-{sim.user_id}").add_rules(oracle)
        result = EditEvalResult(users, rounds, seed, persona.host.name, cost)
        for round_index, round_prompts in enumerate(schedule):
            requests = [
                (f"{c}-{sim.user_id}", _text(p))
                for c in CONDITIONS
                for sim, p in zip(population, round_prompts)
            ]
            replies = persona.generate_batch(requests, max_new_tokens=max_new_tokens)
            for c_index, condition in enumerate(CONDITIONS):
                costs = []
                for u_index, (sim, prompt) in enumerate(zip(population, round_prompts)):
                    reply = replies[c_index * len(population) + u_index].text
                    edited = sim.edit(_text(prompt), reply)
                    costs.append(edit_distance(reply, edited))
                    if (
                        condition == "rules_only"
                        and edited.strip()
                        and edited.strip() != reply.strip()
                    ):
                        persona.user(f"rules_only-{sim.user_id}").add_edit(
                            _text(prompt), response=reply or "(empty reply)", edited=edited
                        )
                cost[condition].append(costs)
            result.seconds = time.perf_counter() - started
            if on_round is not None:
                on_round(round_index, result)
        result.rules_learned = {
            sim.user_id: len(persona.user(f"rules_only-{sim.user_id}").rules())
            for sim in population
        }
    result.seconds = time.perf_counter() - started
    return result


def _text(prompt) -> str:
    """Prompts may come as plain strings or tagged records."""
    return prompt if isinstance(prompt, str) else prompt.text
