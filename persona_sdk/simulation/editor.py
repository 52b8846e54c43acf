"""The simulated users' programmatic editor: deterministic rewrites of a reply toward more
or less of one attribute (shorter, no emoji, bulleted, with a greeting, ...). Code blocks are
left untouched; greetings and sign-offs are kept out of bulleting and shortening.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from persona_sdk.simulation.attributes import (
    ATTRIBUTE_NAMES,
    CAVEAT_PHRASES,
    SUMMARY_PHRASES,
    cached_profile,
    phrase_pattern,
)
from persona_sdk.text.style import EMOJI_RANGES, HEADING, SIGNOFF, SIGNOFF_WORDS

Transform = Callable[[str], str]
_FENCE = re.compile(r"```.*?(?:```|\Z)", re.DOTALL)
_PREFIX = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")
_BUL = re.compile(r"^\s*[-*•]\s+(?=\S)")
_NUM = re.compile(r"^\s*\d+[.)]\s+(?=\S)")
_SENT = re.compile(r"\S.*?(?:[.!?]+(?=\s|$)|$)")
_GREET = re.compile(
    r"^\s*(?:hi|hello|hey|dear|greetings|good (?:morning|afternoon|evening))\b"
    r"[^\n.!?,]*[.!?,]*[ \t]*",
    re.IGNORECASE,
)
_SIGN_BLOCK = re.compile(r"\n[ \t]*" + SIGNOFF_WORDS + r"[ \t]*(?:\n.{0,40})?\s*$", re.IGNORECASE)
_EMOJI = f"[{EMOJI_RANGES}\ufe0f\u200d]+"
_CONTRACT = [
    (r"do not", "don't"),
    (r"does not", "doesn't"),
    (r"did not", "didn't"),
    (r"is not", "isn't"),
    (r"are not", "aren't"),
    (r"can ?not", "can't"),
    (r"will not", "won't"),
    (r"it is", "it's"),
    (r"that is", "that's"),
    (r"there is", "there's"),
    (r"you are", "you're"),
    (r"we are", "we're"),
    (r"they are", "they're"),
    (r"I am", "I'm"),
    (r"let us", "let's"),
]
_EXPAND = [
    (r"can['’]t", "cannot"),
    (r"won['’]t", "will not"),
    (r"(\w+)n['’]t", r"\1 not"),
    (r"let['’]s", "let us"),
    (r"(it|that|there|what|here|who|where)['’]s", r"\1 is"),
    (r"(\w+)['’]re", r"\1 are"),
    (r"(\w+)['’]ve", r"\1 have"),
    (r"(\w+)['’]ll", r"\1 will"),
    (r"i['’]m", "I am"),
    (r"(\w+)['’]d", r"\1 would"),
    ("gonna", "going to"),
    ("wanna", "want to"),
    ("kinda", "rather"),
    ("yeah|yep", "yes"),
    ("nope", "no"),
    ("awesome", "excellent"),
    ("stuff", "things"),
    ("ok|okay", "fine"),
]
_HEDGE_DROP = phrase_pattern(
    r"(?:maybe|perhaps|possibly|probably|somewhat|generally|typically|arguably"
    r"|i think|i believe|it seems)(?:\s+(?:that|like)(?![\w'’]))?"
)
_HEDGE_SWAP = [("might", "will"), ("could be|may be", "is")]


def _tidy(text: str) -> str:
    return re.sub(r"\n{3,}", "\n\n", "\n".join(line.rstrip() for line in text.strip().split("\n")))


def _join(*parts: str) -> str:
    return _tidy("\n\n".join(p.strip() for p in parts if p.strip()))


def _segments(text: str) -> list[tuple[bool, str]]:
    """``(is_code, chunk)`` pieces of ``text``, split at fenced code blocks."""
    out, pos = [], 0
    for m in _FENCE.finditer(text):
        out += [(False, text[pos : m.start()]), (True, m.group())]
        pos = m.end()
    return [*out, (False, text[pos:])]


def _prose_lines(text: str, fn: Callable[[str], str | None]) -> str:
    """``fn`` applied to every prose line (not code); ``None`` drops the line."""
    parts = []
    for is_code, chunk in _segments(text):
        lines = chunk.split("\n")
        if not is_code:
            kept = (ln if ln.startswith(("    ", "\t")) else fn(ln) for ln in lines)
            lines = [x for x in kept if x is not None]
        parts.append("\n".join(lines))
    return _tidy("".join(parts))


def _sentences(line: str) -> tuple[str, list[str]]:
    """A line's list marker (or ``""``) and its sentences."""
    m = _PREFIX.match(line)
    prefix = m.group() if m else ""
    return prefix, _SENT.findall(line[len(prefix) :])


def _subs(text: str, rules: list[tuple[str, str]]) -> str:
    """Whole-word, case-insensitive replacements that keep an initial capital."""
    for pattern, repl in rules:

        def keep_case(m: re.Match[str], repl: str = repl) -> str:
            out = m.expand(repl)
            return out[:1].upper() + out[1:] if m.group()[0].isupper() else out

        text = re.sub(rf"\b(?:{pattern})\b", keep_case, text, flags=re.IGNORECASE)
    return text


def _frame(text: str) -> tuple[str, str, str]:
    """``(greeting line, body, sign-off block)``; the outer two may be empty."""
    text, greeting, signoff = text.strip(), "", ""
    first, _, rest = text.partition("\n")
    if rest.strip() and _GREET.match(first) and len(first.split()) <= 6:
        greeting, text = first.strip(), rest.strip()
    m = _SIGN_BLOCK.search(text)
    if m and text[: m.start()].strip():
        signoff, text = m.group().strip(), text[: m.start()].strip()
    return greeting, text, signoff


def _on_body(fn: Transform) -> Transform:
    def transform(text: str) -> str:
        greeting, body, signoff = _frame(text)
        return _join(greeting, fn(body), signoff) if body else text

    return transform


def _append(line: str, unless: Callable[[str], bool]) -> Transform:
    return _on_body(lambda body: body if unless(body) else _join(body, line))


def _drop(pred: Callable[[str], bool]) -> Transform:
    """Drop the prose sentences matching ``pred`` (never the whole text)."""

    def line_fn(line: str) -> str | None:
        prefix, sents = _sentences(line)
        kept = [s for s in sents if not pred(s)]
        if len(kept) == len(sents):
            return line
        return prefix + " ".join(kept) if kept else None

    return lambda text: out if (out := _prose_lines(text, line_fn)).split() else text


def _shorten(body: str, keep: int = 3) -> str:
    """The first ``keep`` units (sentences, list items, code blocks) of ``body``."""
    units, out = 0, []
    for is_code, chunk in _segments(body):
        if units >= keep:
            break
        if is_code:
            out.append(chunk)
            units += 1
            continue
        lines = []
        for line in chunk.split("\n"):
            if units >= keep:
                break
            prefix, sents = _sentences(line)
            taken = sents[: keep - units]
            units += len(taken)
            lines.append(prefix + " ".join(taken) if sents else line)
        out.append("\n".join(lines))
    return _tidy("".join(out))


def _listify(body: str, numbered: bool) -> str:
    """Every prose sentence and list item becomes a bullet (or a numbered step)."""
    count = 0

    def item(content: str) -> str:
        nonlocal count
        count += 1
        return f"{count}. {content}" if numbered else f"- {content}"

    def line_fn(line: str) -> str:
        stripped = line.strip()
        if not stripped or HEADING.match(line) or stripped.endswith(":") or stripped[0] == "|":
            return line
        if m := (_BUL.match(line) or _NUM.match(line)):
            return item(line[m.end() :].strip())
        return "\n".join(item(s) for s in _SENT.findall(stripped))

    out = _prose_lines(body, line_fn)
    return re.sub(r"(?m)^((?:-|\d+\.) .*)\n\n(?=(?:-|\d+\.) )", r"\1\n", out)


def _unlist(body: str, marker: re.Pattern[str]) -> str:
    """Runs of list items (bullets or numbered) joined back into prose paragraphs."""
    parts = []
    for is_code, chunk in _segments(body):
        if is_code:
            parts.append(chunk)
            continue
        lines: list[str] = []
        run: list[str] = []
        for line in [*chunk.split("\n"), ""]:
            if m := marker.match(line):
                content = line[m.end() :].strip()
                run.append(content if content[-1] in ".!?:" else content + ".")
                continue
            if run:
                lines.append(" ".join(run))
                run = []
            lines.append(line)
        parts.append("\n".join(lines[:-1]))
    return _tidy("".join(parts))


def _first_only(pattern: str, repl: str) -> Transform:
    def transform(text: str) -> str:
        done = False

        def line_fn(line: str) -> str:
            nonlocal done
            if not done and not HEADING.match(line) and re.search(pattern, line):
                done = True
                return re.sub(pattern, repl, line, count=1)
            return line

        return _prose_lines(text, line_fn)

    return transform


def _remove_greeting(text: str) -> str:
    for _ in range(3):
        m = _GREET.match(text.strip())
        if not cached_profile(text).greeting or m is None:
            break
        greeting, body, signoff = _frame(text)
        rest = _join(body, signoff) if greeting else text.strip()[m.end() :]
        if not rest.split():
            return text
        text = _tidy(rest[:1].upper() + rest[1:])
    return text


def _remove_signoff(text: str) -> str:
    for _ in range(3):
        m = SIGNOFF.search(text.strip())
        if not cached_profile(text).signoff or m is None:
            break
        head = text.strip()[: m.start()].rstrip(" \t\n,;:-—")
        if not head.split():
            return text
        text = _tidy(head + ("." if head[-1].isalnum() else ""))
    return text


def _unhedge(text: str) -> str:
    def line_fn(line: str) -> str:
        line = _subs(line, _HEDGE_SWAP)
        while m := _HEDGE_DROP.search(line):
            head, tail = line[: m.start()], re.sub(r"^,?\s*", "", line[m.end() :])
            if re.fullmatch(r"(?:.*[.!?:]\s+)?\s*(?:[-*•]\s+|\d+[.)]\s+)?", head):
                tail = tail[:1].upper() + tail[1:]  # the hedge opened a sentence
            line = head + tail
        return line

    return _prose_lines(text, line_fn)


def _strip_code(text: str) -> str:
    out = re.sub(r"`([^`\n]+)`", r"\1", _FENCE.sub("", text))
    out = _tidy(re.sub(r"(?m)^(?: {4,}|\t+)(?=\S)", "", out))
    return out if out.split() else text


def _summary_line(text: str) -> str:
    if SUMMARY_PHRASES.search(text):
        return text
    for line in _frame(text)[1].split("\n"):
        if not line.startswith(("    ", "\t", "```")) and not HEADING.match(line):
            for sent in _sentences(line)[1]:
                words = sent.rstrip(".!?:").split()
                if len(words) >= 3 and not _GREET.match(sent):
                    return _append(f"In short: {' '.join(words[:15])}.", lambda b: False)(text)
    return text


_EDITS: dict[tuple[str, int], Transform] = {
    ("length", -1): _on_body(_shorten),
    ("bullets", +1): _on_body(lambda body: _listify(body, numbered=False)),
    ("bullets", -1): _on_body(lambda body: _unlist(body, _BUL)),
    ("numbered", +1): _on_body(lambda body: _listify(body, numbered=True)),
    ("numbered", -1): _on_body(lambda body: _unlist(body, _NUM)),
    ("emoji", +1): lambda t: t if re.search(_EMOJI, t) else _first_only(r"(\S)\s*$", "\\1 🙂")(t),
    ("emoji", -1): lambda t: _tidy(
        re.sub(rf"[ \t]*{_EMOJI}", "", re.sub(rf"(?m)^([ \t]*){_EMOJI}[ \t]*", r"\1", t))
    ),
    ("questions", +1): _append(
        "Would you like more detail on any part of this?", lambda body: "?" in body
    ),
    ("questions", -1): lambda t: _prose_lines(
        _drop(lambda s: s.endswith("?"))(t), lambda line: line.replace("?", ".")
    ),
    ("exclamations", +1): lambda t: t if "!" in t else _first_only(r"(?<=\w)\.(?=\s|$)", "!")(t),
    ("exclamations", -1): lambda t: _prose_lines(
        t, lambda line: re.sub(r"(\?)?!+(?=\s|$)", lambda m: m.group(1) or ".", line)
    ),
    ("code", -1): _strip_code,
    ("headings", -1): lambda t: (
        o
        if (o := _prose_lines(t, lambda line: None if HEADING.match(line) else line)).split()
        else t
    ),
    ("hedging", -1): _unhedge,
    ("greeting", +1): lambda t: t if cached_profile(t).greeting else _join("Hi there,", t),
    ("greeting", -1): _remove_greeting,
    ("signoff", +1): lambda t: (
        t if cached_profile(t).signoff else _join(t, "Best,\nYour assistant")
    ),
    ("signoff", -1): _remove_signoff,
    ("casual", +1): lambda t: _prose_lines(t, lambda line: _subs(line, _CONTRACT)),
    ("casual", -1): lambda t: _prose_lines(t, lambda line: _subs(line, _EXPAND)),
    ("caveats", +1): _append(
        "Keep in mind that the details depend on your situation.",
        lambda body: bool(CAVEAT_PHRASES.search(body)),
    ),
    ("caveats", -1): _drop(lambda s: bool(CAVEAT_PHRASES.search(s))),
    ("summary", +1): _summary_line,
    ("summary", -1): _drop(lambda s: bool(SUMMARY_PHRASES.search(s))),
}
EDITABLE_DIRECTIONS: dict[str, tuple[int, ...]] = {
    name: tuple(d for d in (+1, -1) if (name, d) in _EDITS)
    for name in ATTRIBUTE_NAMES
    if any((name, d) in _EDITS for d in (+1, -1))
}
EDITABLE: frozenset[str] = frozenset(EDITABLE_DIRECTIONS)


def edit_toward(text: str, attribute: str, direction: int) -> str:
    """The editor's raw rewrite of ``text`` for more (``direction > 0``) or less of
    ``attribute``; ``text`` unchanged when there is no such edit."""
    transform = _EDITS.get((attribute, 1 if direction > 0 else -1))
    return transform(text) if transform else text
