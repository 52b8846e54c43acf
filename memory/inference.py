"""Optional LLM inference of one short preference phrase from an edit (CIPHER-style)."""

from __future__ import annotations

import re

from persona_sdk.decoding.loop import BatchGeneration, SamplingParams
from persona_sdk.decoding.models import ModelHost

_INSTRUCTION = (
    "A user rewrote an assistant's reply. Compare the two versions and state the user's "
    "preference as one short instruction to the assistant, under 12 words.\n\n"
    "Original reply:\n{response}\n\nUser's version:\n{edited}\n\nInstruction:"
)
_MAX_CHARS = 300  # of each version shown to the model: the gist is at the start


def _clean(raw: str) -> str | None:
    line = raw.strip().splitlines()[0] if raw.strip() else ""
    line = re.sub(r"^(instruction|preference|rule)\s*:\s*", "", line, flags=re.IGNORECASE)
    line = line.strip(" \"'*-")
    letters = sum(ch.isalpha() for ch in line)
    # Small models sometimes echo noise: keep only a plausible short sentence.
    if not 3 <= len(line.split()) <= 20 or letters < 0.6 * len(line):
        return None
    return line if line.endswith((".", "!")) else line + "."


def infer_preference_phrase(host: ModelHost, response: str, edited: str) -> str | None:
    """One imperative phrase (or None when the model produced nothing usable)."""
    prompt = _INSTRUCTION.format(response=response[:_MAX_CHARS], edited=edited[:_MAX_CHARS])
    ids = host.chat_ids([{"role": "user", "content": prompt}])
    row = BatchGeneration(host, [ids], SamplingParams(max_new_tokens=24, stop=("\n",))).run()[0]
    return _clean(row.text)
