"""Read an instruction worded as people word it back into the grammar's spec.

The world model, the CLIPs and the goal check were all trained on the 24 template wordings of
``InstructionSpec.to_text``. People say "Make for the gray bed, the one right beside the blue
cupboard" rather than "go to the grey bed by the blue cabinet". ``read_instruction`` recovers the
spec (target category, colour, room, relation, references) from such a sentence with a lexicon and
a few rules of English, so an agent can hand its models the template wording they know
(``Reading.canonical``). It needs no model and runs in well under a millisecond.

How a sentence is read
----------------------
1. **Mentions.** Longest-match lookup of category, room and colour words, synonyms included
   (``CATEGORIES``, ``ROOMS``, ``COLOURS``; "couch", "cupboard", "telly", "loo", "lounge", "gray",
   ...). Room words are matched first ("bed room" is a room, not a bed), then colours ("light
   blue" is a colour, not a lamp), then categories.
2. **Entities.** Each category mention with its colour: a colour word just before the noun ("the
   red chair", "the bright orange houseplant", "the red-coloured chair") or just after it ("the
   chair that is red", "the chair, the red one"). Mentions of one category are one entity: the
   grammar never makes a reference the target's category.
3. **Relation cues.** "left of X", "on X's left", "to the left-hand side of X", "in front of X",
   "at the back of X", "behind X", "next to / beside / by / near / close to / alongside X",
   "between X and Y"; "its left" / "on its right" point back at an entity already mentioned.
   Words that only look like cues are not: "I left my keys", "right by", "go back".
4. **The target.** An entity singled out by a demonstrative ("that chair", "this lamp") is the
   target. Otherwise it is the entity no cue uses as a reference. A cue whose reference would be
   the target ("go and stand next to that chair") is not the instruction's relation, and a
   directional or "between" cue wins over "next to" ("next to the chair, on its right").

A sentence with no category word gives ``Reading.spec = None``; the agent then keeps the text as
it is. A sentence the grammar itself renders (any of the 24 templates) reads back to its own spec,
and ``Reading.canonical`` is then the text unchanged, so template episodes behave exactly as
before.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from envs.instructions import NUM_TEMPLATES, InstructionSpec, ObjectRef
from envs.paraphrase import CATEGORY_SYNONYMS, COLOR_SYNONYMS, ROOM_SYNONYMS

# Words people use for each category, beyond the paraphrase layer's synonyms. Generic English,
# one list per category; plural forms are added below.
_EXTRA_CATEGORY_WORDS: dict[str, tuple[str, ...]] = {
    "chair": ("armchair", "dining chair", "office chair", "stool"),
    "table": ("coffee table", "dining table", "side table", "desk"),
    "bed": ("double bed", "single bed"),
    "sofa": ("loveseat", "settee", "couch"),
    "cabinet": ("wardrobe", "sideboard", "dresser", "drawers", "cupboard", "closet"),
    "plant": ("houseplant", "pot plant", "potted plant", "flowerpot", "flower pot", "fern"),
    "tv": ("tv", "television", "telly", "tv set", "television set", "screen"),
    "lamp": ("lamp", "floor lamp", "standing lamp", "reading lamp"),
    "toilet": ("toilet", "loo", "lavatory", "wc", "commode"),
    "bookshelf": ("bookshelf", "bookcase", "book shelf", "bookshelves", "shelves", "shelf", "book case"),
}
_EXTRA_ROOM_WORDS: dict[str, tuple[str, ...]] = {
    "living room": ("living area", "sitting area", "den", "front room"),
    "bedroom": ("bed room",),
    "kitchen": ("kitchenette",),
    "bathroom": ("bath room", "wash room"),
    "office": ("study room", "work room"),
    "dining room": ("dining space",),
    "hallway": ("entryway", "entrance", "hall way", "landing"),
}
_EXTRA_COLOUR_WORDS: dict[str, tuple[str, ...]] = {
    "grey": ("gray", "silver", "silver grey", "silver gray", "charcoal"),
    "red": ("maroon",),
    "purple": ("lilac", "lavender", "mauve"),
    "brown": ("tan", "beige"),
    "green": ("olive",),
    "blue": ("navy", "navy blue", "sky blue", "light blue", "dark blue", "turquoise"),
    "yellow": ("golden", "gold"),
    "white": ("ivory", "cream"),
}


def _tokens(text: str) -> list[str]:
    t = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    t = re.sub(r"(?<=[a-z])-(?=[a-z])", " ", t)  # left-hand, red-coloured, lemon-yellow
    return re.findall(r"[a-z]+|'s\b|'|[.,;:!?()\-]", t)


def _lexicon(*tables: dict[str, tuple[str, ...]]) -> dict[tuple[str, ...], str]:
    out: dict[tuple[str, ...], str] = {}
    for table in tables:
        for key, words in table.items():
            for w in (key, *words):
                toks = tuple(_tokens(w))
                out.setdefault(toks, key)
                if len(toks[-1]) > 2 and not toks[-1].endswith("s"):  # plurals: chairs, couches
                    plural = toks[-1] + ("es" if toks[-1].endswith(("ch", "sh", "x")) else "s")
                    out.setdefault(toks[:-1] + (plural,), key)
    return out


CATEGORIES = _lexicon(CATEGORY_SYNONYMS, _EXTRA_CATEGORY_WORDS)
ROOMS = _lexicon(ROOM_SYNONYMS, _EXTRA_ROOM_WORDS)
COLOURS = _lexicon(COLOR_SYNONYMS, _EXTRA_COLOUR_WORDS)
# matched in this order (rooms before categories: "bed room"; colours before categories: "light blue")
_TABLES = tuple((kind, table, max(len(k) for k in table))
                for kind, table in (("room", ROOMS), ("colour", COLOURS), ("category", CATEGORIES)))
# "bath" names a room only after "in the"/"into the": alone it is too often the tub.
_ROOM_NEEDS_IN = {("bath",), ("hall",), ("study",), ("entrance",), ("landing",), ("den",)}
_CLAUSE_END = {".", ",", ";", ":", "!", "?", "(", ")", "-"}
_DEMONSTRATIVES = {"that", "this"}
_POSSESSIVE_PRONOUNS = {"its", "their"}
# Where "left"/"right"/"front"/"back" is a relation word, not a verb ("I left"), an adverb ("right
# by", "go back") or a direction to turn.
_SIDE_BEFORE = {"the", "its", "'s", "'", "their", "just", "to", "on", "at", "of", "is", "directly"}
_SIDE_AFTER = {"of", "side", "hand"}
_INTENSIFIED = {"in", "behind", "by", "beside", "next", "at", "there", "here", "over", "up", "down", "now",
                "away", "near", "against", "alongside", "between", "across", "outside", "inside", "on", "to"}


@dataclass
class _Mention:
    kind: str  # "category" | "room" | "colour"
    value: str
    start: int
    end: int  # exclusive


@dataclass
class _Entity:
    category: str
    color: str | None
    marked: bool = False  # singled out by a demonstrative: "that chair"


@dataclass
class _Cue:
    relation: str
    refs: list[int]  # entity indices


@dataclass
class Reading:
    """What ``read_instruction`` recovered from one sentence.

    Attributes:
        text: the sentence as given.
        spec: the recovered spec, or None when the sentence names no category the grammar knows.
        canonical: the text an agent should hand its models: ``text`` itself when it already is a
            template wording (or nothing could be read), else ``spec.to_text(0)``.
        is_template: whether ``text`` is one of the grammar's own wordings of ``spec``.
    """

    text: str
    spec: InstructionSpec | None
    canonical: str
    is_template: bool


def _find_mentions(toks: list[str]) -> list[_Mention]:
    found: list[_Mention] = []
    taken = [False] * len(toks)
    for kind, table, longest in _TABLES:
        i = 0
        while i < len(toks):
            hit = None
            for n in range(min(longest, len(toks) - i), 0, -1):
                key = tuple(toks[i:i + n])
                if key in table and not any(taken[i:i + n]):
                    hit = (n, table[key])
                    break
            if hit is None:
                i += 1
                continue
            n, value = hit
            if kind == "room" and tuple(toks[i:i + n]) in _ROOM_NEEDS_IN and (i == 0 or toks[i - 1] != "the"):
                i += 1
                continue
            found.append(_Mention(kind, value, i, i + n))
            for j in range(i, i + n):
                taken[j] = True
            i += n
    return sorted(found, key=lambda m: m.start)


def _colour_of(noun: _Mention, mentions: list[_Mention], toks: list[str]) -> str | None:
    colours = [m for m in mentions if m.kind == "colour"]
    # before the noun: "the red chair", "the bright orange plant", "the red coloured chair"
    for c in colours:
        between = toks[c.end:noun.start]
        if c.end <= noun.start and len(between) <= 2 and all(
                w in {"coloured", "colored", "potted", "little", "big", "small", "large", "old", "tall"}
                for w in between):
            return c.value
    # after it: "the chair that is red", "the chair which is red", "the chair, the red one"
    after = toks[noun.end:noun.end + 5]
    for c in colours:
        k = c.start - noun.end
        if 0 <= k < len(after):
            gap = after[:k]
            if gap in (["that", "is"], ["which", "is"], ["that", "'s"], ["thats"], [",", "the"], ["the"],
                       ["in"], ["painted"], ["that", "is", "painted"]):
                return c.value
    return None


def _cues(toks: list[str], noun_ends: set[int]) -> list[tuple[str, int, str]]:
    """(relation, token index, how the reference is found): "after" (the next entities),
    "possessive" (the entity before "'s": "the sofa's left", not "that's next to"), "pronoun"
    (its/their), "back" ("between them": the entities before)."""
    out = []
    n = len(toks)

    def at(i: int) -> str:
        return toks[i] if 0 <= i < n else ""

    for i, w in enumerate(toks):
        rel = None
        if w in ("left", "right"):
            if w == "right" and at(i + 1) in _INTENSIFIED and at(i - 1) not in {"the", "'s", "'", "its", "their"}:
                continue  # "right in front of", "right by", "right there"
            if at(i + 1) in _SIDE_AFTER or at(i - 1) in _SIDE_BEFORE:
                if at(i - 1) == "to" and at(i + 1) not in _SIDE_AFTER and at(i - 2) not in ("the", "its"):
                    continue  # "turn to the right"-like uses without a reference
                rel = "left_of" if w == "left" else "right_of"
        elif w == "front" and (at(i - 1) in {"in", "the", "its", "'s", "'"} or at(i + 1) in _SIDE_AFTER):
            rel = "in_front_of"
        elif w == "behind":
            rel = "behind"
        elif w == "back" and (at(i + 1) in {"of", "side"} or at(i - 1) in {"its", "'s", "'"}
                              or (at(i - 1) == "the" and at(i + 1) == "of")):
            rel = "behind"
        elif w == "between":
            rel = "between"
        elif w in ("beside", "besides", "alongside", "near", "nearby", "adjacent", "by", "next", "close",
                   "against"):
            if w == "next" and at(i + 1) != "to":
                continue
            if w == "close" and at(i + 1) not in ("to", "by"):
                continue
            if w == "by" and at(i - 1) == "close":
                continue
            rel = "next_to"
        if rel is None:
            continue
        # where the reference is
        if (at(i - 1) in ("'s", "'") and i - 2 in noun_ends) or (
                at(i - 2) in ("'s", "'") and i - 3 in noun_ends and at(i - 1) in ("own", "left", "right")):
            out.append((rel, i, "possessive"))
        elif at(i - 1) in _POSSESSIVE_PRONOUNS or (at(i - 2) in _POSSESSIVE_PRONOUNS and at(i - 1) == "own"):
            out.append((rel, i, "pronoun"))
        elif rel == "between" and at(i + 1) in ("them", "those", "these", "the", "two") and (
                at(i + 1) != "the" or at(i + 2) == "two"):
            out.append((rel, i, "back"))
        else:
            out.append((rel, i, "after"))
    return out


def read_instruction(text: str) -> Reading:
    """The spec behind ``text`` (module docstring); never raises on a string."""
    if not isinstance(text, str):
        raise TypeError(f"read_instruction needs a string, got {type(text).__name__}")
    toks = _tokens(text)
    mentions = _find_mentions(toks)
    nouns = [m for m in mentions if m.kind == "category"]
    if not nouns:
        return Reading(text, None, text, False)
    entities: list[_Entity] = []
    noun_at: dict[int, int] = {}
    for m in nouns:
        colour = _colour_of(m, mentions, toks)
        same = [k for k, e in enumerate(entities) if e.category == m.value]
        if same:
            k = same[0]
            if colour and entities[k].color is None:
                entities[k].color = colour
        else:
            entities.append(_Entity(m.value, colour))
            k = len(entities) - 1
        noun_at[m.start] = k
        before = [w for w in toks[max(0, m.start - 3):m.start] if w not in _CLAUSE_END]
        if before and before[0] in _DEMONSTRATIVES or (before and before[-1] in _DEMONSTRATIVES):
            entities[k].marked = True
    rooms = [m for m in mentions if m.kind == "room"]
    room = rooms[0].value if rooms else None

    def entities_after(start: int, count: int) -> list[int]:
        seen: list[int] = []
        for p in sorted(noun_at):
            if p >= start and noun_at[p] not in seen:
                seen.append(noun_at[p])
                if len(seen) == count:
                    break
        return seen

    def entity_before(pos: int, exclude: set[int]) -> int | None:
        for p in sorted(noun_at, reverse=True):
            if p < pos and noun_at[p] not in exclude:
                return noun_at[p]
        return None

    marked = {k for k, e in enumerate(entities) if e.marked}
    cues: list[_Cue] = []
    if len(entities) >= 2:
        for rel, pos, how in _cues(toks, {m.end - 1 for m in nouns}):
            need = 2 if rel == "between" else 1
            if how == "after":
                start = pos + 1
                refs = entities_after(start, need)
                if rel != "between" and refs:
                    # the reference is the first entity after the cue, within a few words of one clause
                    first = min(p for p in noun_at if p >= start and noun_at[p] == refs[0])
                    if first - start > 8 or any(w in _CLAUSE_END for w in toks[start:first]):
                        refs = []
            elif how == "possessive":
                k = entity_before(pos, set())
                refs = [] if k is None else [k]
            elif how == "pronoun":
                # "its" is not the noun it qualifies: in "the plant on its left", its = an earlier noun
                own = {noun_at[p] for p in noun_at if 0 < pos - p <= 3}
                k = entity_before(pos, marked | own)
                if k is None:
                    k = entity_before(pos, marked)
                refs = [] if k is None else [k]
            else:  # "between them": the two entities before the cue
                first = entity_before(pos, marked)
                second = None if first is None else entity_before(pos, marked | {first})
                refs = [r for r in (second, first) if r is not None]
            if len(refs) == need:
                cues.append(_Cue(rel, refs))

    # the target, and the relation that singles it out
    chosen: _Cue | None = None
    # a directional or "between" cue says more than "next to" ("next to the chair, on its right")
    cues.sort(key=lambda c: c.relation == "next_to")
    for cue in cues:
        if marked and marked & set(cue.refs):
            continue  # "go and stand next to that chair": the cue names the target, not a reference
        if not [k for k in range(len(entities)) if k not in cue.refs]:
            continue
        chosen = cue
        break
    if chosen is None:  # no usable relation: the marked entity, else the first mentioned
        target = min(marked) if marked else 0
        relation, refs = None, []
    else:
        free = [k for k in range(len(entities)) if k not in chosen.refs]
        free_marked = [k for k in free if k in marked]
        target = free_marked[0] if free_marked else free[0]
        relation, refs = chosen.relation, chosen.refs
    t = entities[target]
    spec = InstructionSpec(category=t.category, color=t.color, room=room, relation=relation,
                           references=tuple(ObjectRef(entities[r].category, entities[r].color) for r in refs))
    norm = " ".join(text.split())
    is_template = any(spec.to_text(k) == norm for k in range(NUM_TEMPLATES))
    return Reading(text, spec, text if is_template else spec.to_text(0), is_template)


def same_spec(a: InstructionSpec | None, b: InstructionSpec | None) -> bool:
    """Whether two specs describe the same goal (the wording template aside)."""
    if a is None or b is None:
        return a is b
    da, db = a.to_dict(), b.to_dict()
    da.pop("template"), db.pop("template")
    if a.relation == "between" and b.relation == "between":
        da["references"] = sorted(map(str, da["references"]))
        db["references"] = sorted(map(str, db["references"]))
    return da == db


def reading_accuracy(pairs: Sequence[tuple[str, InstructionSpec]]) -> dict[str, float]:
    """Fractions of ``(text, true spec)`` pairs read exactly, and by field."""
    n = len(pairs)
    if not n:
        raise ValueError("reading_accuracy: no pairs")
    hits = {"exact": 0, "category": 0, "color": 0, "room": 0, "relation": 0, "references": 0}
    for text, truth in pairs:
        got = read_instruction(text).spec
        if got is None:
            continue
        hits["exact"] += same_spec(got, truth)
        hits["category"] += got.category == truth.category
        hits["color"] += got.color == truth.color
        hits["room"] += got.room == truth.room
        hits["relation"] += got.relation == truth.relation
        hits["references"] += sorted(map(str, got.references)) == sorted(map(str, truth.references))
    return {k: v / n for k, v in hits.items()}


def main(argv: Sequence[str] | None = None) -> dict[str, dict[str, float]]:
    """``python -m envs.instruction_reader [FILE ...] [--show]``: how well the reader recovers the spec of
    the shipped hand-written sets (or the given free-wording files) and of their template wordings."""
    import argparse
    from pathlib import Path

    from envs.paraphrase import FREE_WORDING, load_free_wording

    ap = argparse.ArgumentParser(prog="python -m envs.instruction_reader", description=main.__doc__)
    ap.add_argument("files", nargs="*", help="free-wording files (default: the shipped val and test sets)")
    ap.add_argument("--show", action="store_true", help="print each sentence read wrongly")
    args = ap.parse_args(argv)
    out: dict[str, dict[str, float]] = {}
    for f in args.files or [str(p) for p in FREE_WORDING.values()]:
        table = load_free_wording(f)
        for wording in ("free", "template"):
            pairs = [(v[wording], InstructionSpec.from_dict(v["spec"])) for v in table.values() if "spec" in v]
            if not pairs:
                raise ValueError(f"{f}: no entry carries its 'spec', so there is nothing to check the reading against")
            acc = reading_accuracy(pairs)
            out[f"{Path(f).name}:{wording}"] = acc
            print(f"{Path(f).name} {wording:8s} n={len(pairs):3d} " + " ".join(f"{k} {v:.3f}" for k, v in acc.items()))
            if args.show:
                for text, truth in pairs:
                    got = read_instruction(text).spec
                    if not same_spec(got, truth):
                        print(f"  {text!r}: read {got.to_text(0) if got else None!r}, means {truth.to_text(0)!r}")
    return out


__all__ = ["Reading", "main", "read_instruction", "reading_accuracy", "same_spec", "CATEGORIES", "ROOMS", "COLOURS"]


if __name__ == "__main__":
    main()
