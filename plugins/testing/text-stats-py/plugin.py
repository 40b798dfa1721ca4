"""The tool of plugins/examples/text-stats-ts, written in Python, so the
benchmarks (`prx-bench languages`) compare one piece of work across
languages. Same rules as the TypeScript."""

import math
import re
import string

from prx_pdk import host, tool

_PUNCT = re.escape("".join(c for c in string.punctuation if c != "'"))
_WORD = re.compile(rf"[^\s{_PUNCT}]+")


def words(text):
    return _WORD.findall(text.lower())


def most_frequent(all_words, n):
    counts = {}
    for w in all_words:
        counts[w] = counts.get(w, 0) + 1
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]


@tool(name="text_stats_py", description="Statistics of a text", schema={"type": "object", "required": ["text"]})
def text_stats(args):
    text = args.get("text")
    if not isinstance(text, str):
        raise TypeError('"text" must be a string')
    top = args.get("top", 3)
    if not isinstance(top, int) or isinstance(top, bool) or not 0 <= top <= 50:
        raise ValueError('"top" must be a whole number from 0 to 50')
    per_minute = float(host.config.get_or("words_per_minute", "230"))
    all_words = words(text)
    sentences = len([s for s in re.split(r"[.!?]+", text) if s.strip()])
    seen = host.kv.increment("texts_seen")
    host.log.debug(f"text {seen}: {len(all_words)} words")
    return {
        "words": len(all_words),
        "sentences": sentences,
        "top": [list(p) for p in most_frequent(all_words, top)],
        "reading_seconds": math.ceil(len(all_words) / per_minute * 60),
        "texts_seen": seen,
    }
