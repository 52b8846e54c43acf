"""Quickstart: users with different rules, one shared model; checkable rules enforced.

Run: .venv/bin/python examples/quickstart.py
"""

from __future__ import annotations

import tempfile

from persona_sdk import Persona


def main() -> None:
    with tempfile.TemporaryDirectory() as data_dir, Persona.open(data_dir) as persona:
        alice = persona.user("alice")
        alice.add_rule("Answer in one sentence.")  # applies to every request
        alice.add_rule("Keep it under 100 words", context="emails to my manager")
        note = persona.generate(
            "alice", "Draft a note to my manager about Friday", max_new_tokens=120
        )
        print(f"[alice]\n{note.text}")
        for check in note.constraints:  # each enforced rule, verified on the final text
            kept = "kept" if check.passed else "NOT met"
            print(f"  enforced: {check.constraint.describe()}: {kept} ({check.detail})")
        print()

        persona.user("ana").add_rule("Answer in one sentence.")
        persona.user("ben").add_rule("Explain it like I'm five years old.")
        persona.user("ben").add_rule("Keep it under 100 words", context="emails to my manager")

        prompt = "Explain what a black hole is."
        for reply in persona.generate_batch([("ana", prompt), ("ben", prompt)], max_new_tokens=60):
            rules = ", ".join(r.text for r in reply.used_rules)
            print(f"[{reply.user_id}] (rules: {rules})\n{reply.text}\n")

        print("ben streams:", end=" ")
        for chunk in persona.generate(
            "ben", "Why is the sea salty?", max_new_tokens=40, stream=True
        ):
            print(chunk, end="", flush=True)
        print()
        print(persona.user("ben").explain("Write an email to my manager").to_dict())


if __name__ == "__main__":
    main()
