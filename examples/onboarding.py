"""Onboard a new user from five A/B answers, then use their reward model.

Run: ``python examples/onboarding.py``. The "user" here always picks the shorter reply,
standing in for a person answering ``persona onboard``.
"""

from __future__ import annotations

import tempfile

from persona_sdk import Persona

with tempfile.TemporaryDirectory() as data, Persona.open(data) as p:
    user = p.user("sam")
    print("before any answer:", user.reward_profile().personalized)
    for n in range(5):
        q = user.next_question()  # the pair the posterior is least sure about
        shorter, longer = sorted([q.a, q.b], key=len)
        user.add_pair(q.prompt, chosen=shorter, rejected=longer, source="onboarding")
        print(f"Q{n + 1}: expected information {q.information:.3f} nats")
    for axis, weight in user.weights.items():
        print(f"  {axis:<32} {weight:+.2f}")
    prompt = "How do I make good coffee at home?"
    brief = "Use fresh beans, grind just before brewing, and weigh your water."
    long = brief + " " + " ".join(["There is much more to say about coffee."] * 6)
    print("P(brief ≻ long) =", round(user.prefer(prompt, brief, long), 3))
