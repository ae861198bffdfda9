"""Words as the knowledge base compares them: folded (lower case, no accents) and stemmed
(English Snowball: "running" and "runs" are "run"), so that a query finds a passage whatever
the inflection. The lexical index (infra.kb_sqlite) and the hybrid score's query coverage
(commands.kb) use the same functions."""

from __future__ import annotations

import re
import threading
import unicodedata

import snowballstemmer

MAX_TERM_CHARS = 100  # longer words are cut (a base64 blob is not a word anyone searches)
MAX_QUERY_TERMS = 64  # distinct terms of a query; the rest are ignored
# Letters and digits: a word ends at anything else, underscores too ("snake_case" is two words,
# as a reader sees it).
WORD = re.compile(r"[^\W_]+")
# Unicode's combining marks (diacritics), as NFKD separates them from their letters.
_MARKS = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")
# Words that carry no topic. The lexical index keeps them (BM25 weighs them down by itself);
# a query's coverage leaves them out.
_STOP_WORDS = """a about above after again all am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from
    further get gets got had has have having he her here hers herself him himself his how i
    if in into is it its itself just me more most my myself no nor not now of off on once
    only or other our ours ourselves out over own same she should so some such than that the
    their theirs them themselves then there these they this those through to too under until
    up use used using very want was we were what when where which while who whom why will
    with would you your yours yourself yourselves"""
STOP_WORDS = frozenset(_STOP_WORDS.split())
STEM_CACHE = 200_000  # distinct words whose stems are remembered (then forgotten at once)

_stemmers = threading.local()  # a Snowball stemmer keeps state while it stems: one per thread
_stems: dict[str, str] = {}


def fold(text: str) -> str:
    """Lower case without accents ("Café" -> "cafe"; "ﬁ" -> "fi")."""
    if text.isascii():
        return text.lower()
    return _MARKS.sub("", unicodedata.normalize("NFKD", text.casefold()))


def stem(word: str) -> str:
    """The stem of a folded word."""
    found = _stems.get(word)
    if found is None:
        stemmer = getattr(_stemmers, "english", None)
        if stemmer is None:
            stemmer = _stemmers.english = snowballstemmer.stemmer("english")
        found = stemmer.stemWord(word) or word
        if len(_stems) >= STEM_CACHE:
            _stems.clear()
        _stems[word] = found
    return found


def terms(text: str) -> list[str]:
    """Every word of the text as a term (folded, cut to MAX_TERM_CHARS, stemmed), in order,
    repeats included."""
    return [stem(word[:MAX_TERM_CHARS]) for word in WORD.findall(fold(text))]


def query_terms(text: str) -> list[str]:
    """A query's distinct terms (at most MAX_QUERY_TERMS), in order."""
    return list(dict.fromkeys(terms(text)))[:MAX_QUERY_TERMS]


def topic_terms(text: str) -> list[str]:
    """The stems of a query's topic words (no stop word, no single letter), in order, without
    repeats, at most MAX_QUERY_TERMS."""
    words = [w for w in WORD.findall(fold(text)) if w not in STOP_WORDS and len(w) > 1]
    return list(dict.fromkeys(stem(w[:MAX_TERM_CHARS]) for w in words))[:MAX_QUERY_TERMS]
