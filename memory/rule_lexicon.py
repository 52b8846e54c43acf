"""Word tables for reading stated rules without a model: normalisation, a light stemmer,
number words, polarity words, and the concept lexicon (topic words with their pole).

Concepts named after a template feature of :mod:`persona_sdk.memory.edits` ("emoji",
"bullets", "length", ...) mean the same thing there, so a parsed rule maps onto a template.
"""

from __future__ import annotations

import re
import unicodedata

_ZERO_WIDTH = re.compile("[\u200b-\u200f\u2060\ufeff]")
_APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "`": "'"})
_IS_CONTRACTIONS = re.compile(r"\b(it|that|what|there|here|he|she|name|who)'s\b", re.IGNORECASE)
_CONTRACTIONS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\bcan't\b", re.IGNORECASE), "can not"),
    (re.compile(r"\bwon't\b", re.IGNORECASE), "will not"),
    (re.compile(r"\b(\w+)n't\b", re.IGNORECASE), r"\1 not"),
    (re.compile(r"\bI'm\b", re.IGNORECASE), "I am"),
    (re.compile(r"'re\b"), " are"),
    (re.compile(r"'ve\b"), " have"),
    (re.compile(r"'ll\b"), " will"),
    (re.compile(r"'d\b"), " would"),
    (re.compile(r"'s\b"), ""),  # possessive: "my dog's name" reads as "my dog name"
]


def normalise(text: str | None) -> str:
    """Unicode folded, zero-width characters dropped, contractions expanded; case kept
    (capitals mark names and places)."""
    text = unicodedata.normalize("NFKC", text or "").translate(_APOSTROPHES)
    text = _ZERO_WIDTH.sub("", text)
    text = _IS_CONTRACTIONS.sub(r"\1 is", text)
    for pattern, replacement in _CONTRACTIONS:
        text = pattern.sub(replacement, text)
    return " ".join(text.split())


def words(table: str) -> list[str]:
    """The whitespace-separated entries of a word table written as text."""
    return table.split()


def lower_aligned(text: str) -> str:
    """Lower case with the same length as ``text`` (so spans line up between the two)."""
    return "".join(c.lower() if len(c.lower()) == 1 else c for c in text)


_IRREGULAR = {
    "children": "child",
    "people": "person",
    "men": "man",
    "women": "woman",
    "feet": "foot",
    "teeth": "tooth",
    "mice": "mouse",
    "geese": "goose",
    "wives": "wife",
    "knives": "knife",
    "lives": "life",
}


def stem(word: str) -> str:
    """A crude suffix stripper: enough to equate "swearing"/"swear", "cycle"/"cycling"."""
    w = word.lower().strip("'-")
    w = _IRREGULAR.get(w, w)
    if len(w) > 4 and w.endswith("ies"):
        w = w[:-3] + "y"
    elif len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        w = w[:-1]
    for suffix in ("ingly", "edly", "ing", "ed", "ly"):
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            w = w[: -len(suffix)]
            break
    if len(w) > 3 and w[-1] == w[-2] and w[-1] not in "lsz":
        w = w[:-1]
    if len(w) > 3 and w.endswith("e"):
        w = w[:-1]
    return w


# -- numbers ------------------------------------------------------------------------------

_SMALL = words(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
)
_TENS = words("twenty thirty forty fifty sixty seventy eighty ninety")
NUMBER_WORDS: dict[str, int] = {w: i for i, w in enumerate(_SMALL)}
NUMBER_WORDS.update({w: 20 + 10 * i for i, w in enumerate(_TENS)})
NUMBER_WORDS.update({"single": 1, "dozen": 12, "couple": 2, "hundred": 100, "thousand": 1000})
_WORD = "|".join(sorted(NUMBER_WORDS, key=len, reverse=True))
NUMBER = rf"(?:\d[\d,]*(?:\.\d+)?k?|(?:an? )?(?:{_WORD})(?:[- ](?:and[- ])?(?:{_WORD}))*(?: of)?)"


def parse_number(text: str) -> float | None:
    """ "fifty" → 50, "two hundred fifty" → 250, "1,200" → 1200, "3k" → 3000."""
    text = text.lower().strip()
    digits = re.fullmatch(r"(\d[\d,]*(?:\.\d+)?)(k?)", text)
    if digits:
        value = float(digits.group(1).replace(",", ""))
        return value * 1000 if digits.group(2) else value
    total, current, seen = 0, 0, False
    for word in re.split(r"[- ]+", text):
        if word in ("a", "an", "and", "of"):
            continue
        if word not in NUMBER_WORDS:
            return None
        seen = True
        n = NUMBER_WORDS[word]
        if n == 100:
            current = max(current, 1) * 100
        elif n == 1000:
            total, current = total + max(current, 1) * 1000, 0
        else:
            current += n
    return float(total + current) if seen else None


# -- polarity -----------------------------------------------------------------------------

NEGATORS = re.compile(
    r"\b(not|no|never|without|none|nothing|no longer|less|fewer|avoid\w*|stop\w*|skip\w*|"
    r"drop\w*|omit\w*|leave out|leaving out|left out|cut out|get rid of|refrain\w*|quit\w*|"
    r"give up|gave up|given up|giving up|exclud\w*|eliminat\w*|remov\w*|ban|ditch\w*|"
    r"forget|lose)\b"
)
# "X not Y" splits into X and "not Y" unless "not" negates an auxiliary ("do not use")
AUXILIARIES = frozenset(
    words("do does did is are am was were will would should can could must may might need has have")
)
CHANGE_MARKERS = re.compile(
    r"\b(now|anymore|no longer|these days|nowadays|lately|recently|again|instead|switch\w*|"
    r"moved|sold|quit|stopped|gave up|given up|started|became|got|changed|used to|any more)\b"
)

# -- concepts: (pattern, concept, pole); first match wins, phrases before single words ----

_C = list[tuple[re.Pattern[str], str, int]]


def _concepts(rows: list[tuple[str, str, int]]) -> _C:
    return [(re.compile(rf"\b(?:{p})\b"), c, s) for p, c, s in rows]


CONCEPTS: _C = _concepts(
    [
        (r"(short|brief|concise)(er)?( \w+)? sentences?", "sentence_length", -1),
        (r"(long|flowing)(er)?( \w+)? sentences?", "sentence_length", +1),
        (r"(short|brief)(er)?( \w+)? paragraphs?", "paragraph_length", -1),
        (r"long(er)?( \w+)? paragraphs?", "paragraph_length", +1),
        (r"numbered( lists?| steps?| points?| items?)?|step[- ]by[- ]step|steps?", "numbered", 1),
        (r"bullet(ed)?( points?| lists?)?|bullets|lists?|listicles?", "bullets", +1),
        (r"prose|flowing text|full paragraphs", "bullets", -1),
        (r"emoji\w*|emoticons?|smile(y|ys|ies)", "emoji", +1),
        (r"code( examples?| samples?| snippets?| blocks?)?|snippets?", "code", +1),
        (r"(section )?head(ing|er)s?|sub-?headings?|sections?", "headings", +1),
        (r"greet\w*|hello|salutations?", "greeting", +1),
        (r"sign[- ]?offs?|sign your \w+|closing lines?|valedictions?", "signoff", +1),
        (r"(follow[- ]up )?questions?|ask\w*", "questions", +1),
        (r"exclamation( marks?| points?)?s?", "exclamations", +1),
        (r"hedg\w*|cautious\w*|caveats?", "hedging", +1),
        (r"direct\w*|confident\w*|assertive\w*|blunt\w*", "hedging", -1),
        (r"casual\w*|informal\w*|slang|chatty|laid[- ]back|relaxed", "casual", +1),
        (r"formal\w*|professional\w*|businesslike", "casual", -1),
        (r"short(er)?|brief\w*|concise\w*|terse|succinct\w*|to the point|compact", "length", -1),
        (
            r"long(er)?|detailed|thorough\w*|in[- ]depth|elaborat\w*|comprehensive|lengthy",
            "length",
            1,
        ),
        # topics outside the templates, with their common synonyms
        (r"technical terms?|jargon|acronyms?", "jargon", +1),
        (r"sources?|cit(e|es|ing|ations?)|references?", "sources", +1),
        (r"prices?|pricing|costs?", "price", +1),
        (r"swear\w*|profanity|curs(e|es|ing)|cuss\w*", "swearing", +1),
        (r"alcohol\w*|wine|beer|booze|liquor", "alcohol", +1),
        (r"pets?|cats?|dogs?|kittens?|pupp(y|ies)", "pet", +1),
        (r"cars?|driv\w*|vehicles?", "car", +1),
        (r"run|runs|running|runner|jog\w*|(half[- ])?marathons?", "running", +1),
        (r"summar\w*|tl;?dr|recap", "summary", +1),
        (r"(oxford|serial) comma", "oxford_comma", +1),
        (r"competitors?|rivals?", "competitors", +1),
        (r"(\w+)[- ]free", "", -1),  # "gluten-free": the named thing, negated
    ]
)
TEMPLATE_CONCEPTS = frozenset(
    words(
        "sentence_length numbered bullets emoji code headings greeting signoff questions "
        "exclamations hedging casual length"
    )
)

# words that carry no topic: light verbs, pronouns, reply nouns, politeness, change markers
FILLER = frozenset(
    stem(w)
    for w in words(
        """
    a an the this that these those it its i me my mine we our you your yours they them their
    in into to of for with on at by as from about and or than then so if when while also too
    use using add include give keep make put be being been is are am was were have has had
    get let please always only just really very every all any anything everything something
    thing stuff way reply replies answer answers response responses output tone style format
    formatting show mention bring up stay prefer like want would should must need do does did
    will can could may might fine okay ok allowed welcome acceptable good great now anymore
    again these days nowadays lately recently instead actually from on start end begin
    beginning ending there here more much some unit units measurement measurements time times
    switched switch moved sold quit stopped gave given got became changed started used
    everywhere one
    """
    )
)
REPLY_WORDS = re.compile(
    r"\b(reply|replies|answer|answers|respond|response|responses|tell me|explain|write|"
    r"call me|address me|refer to me|give me|show me|remind me)\b"
)
PREFERENCE_START = re.compile(r"^(i would like|i want|i prefer|i like it when|i need you)\b")
FIRST_PERSON_START = re.compile(
    r"^(?:(?:actually|btw|fyi|also|oh|so|well|just so you know)\s+)*"
    r"(i|my|we|our|i am|me)\b"
)
