"""Instructions as people word them: a paraphrase layer over the instruction grammar.

``InstructionSpec.to_text`` renders a spec in one of 24 fixed templates ("go to the blue
chair left of the bed"). ``paraphrase(spec, seed)`` renders the *same* spec in free
wording, choosing independently

* a synonym for the target's and each reference's category ("sofa" -> "couch",
  "settee"), colour ("grey" -> "gray", "silver") and room ("living room" -> "lounge");
* how the colour attaches ("the red chair", "the chair that is red", "the red-coloured
  chair", "the chair, the red one");
* a wording of the relation ("left of the bed" -> "on the bed's left", "to the left-hand
  side of the bed"; "next to" -> "beside", "close to", "right by", ...) and where the
  relation clause sits (after the target, as a relative clause, or fronted: "To the left
  of the bed there is a chair - go to it");
* where the room sits (after the target, or fronted: "In the kitchen, find ...");
* a sentence form: plain imperatives ("walk over to", "take me to", "make your way to"),
  polite ones ("could you go to ... please?", "would you mind heading to ...?") and
  indirect ones ("I'm looking for ...", "the target is ...", "where is ...? take me there").

Every choice keeps the meaning: directional relations keep the intrinsic frame of the
reference (``envs.instructions``), so "on the sofa's left" is still the sofa's own left;
nothing is added or dropped. The output is deterministic in (spec, seed) and uses only
the characters the env's ``instruction`` space allows.

Mirrored relations have parallel phrase lists (left_of / right_of, in_front_of / behind),
so ``paraphrase(spec, s)`` and ``paraphrase(mirror(spec), s)`` differ only in the relation
words: a hard negative for contrastive training (``world_model.ssg.clip_data``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np

from envs.instructions import InstructionSpec, ObjectRef

CATEGORY_SYNONYMS: dict[str, tuple[str, ...]] = {
    "chair": ("chair", "seat", "chair", "side chair"),
    "table": ("table", "desk", "table", "tabletop"),
    "bed": ("bed", "bed", "double bed", "bed frame"),
    "sofa": ("sofa", "couch", "settee", "couch"),
    "cabinet": ("cabinet", "cupboard", "dresser", "chest of drawers"),
    "plant": ("plant", "potted plant", "houseplant", "pot plant"),
    "tv": ("TV", "television", "telly", "TV set"),
    "lamp": ("lamp", "floor lamp", "light", "standing lamp"),
    "toilet": ("toilet", "loo", "lavatory", "toilet bowl"),
    "bookshelf": ("bookshelf", "bookcase", "book shelf", "shelf of books"),
}
COLOR_SYNONYMS: dict[str, tuple[str, ...]] = {
    "red": ("red", "crimson", "scarlet"),
    "green": ("green", "emerald", "green-coloured"),
    "blue": ("blue", "azure", "blue-coloured"),
    "yellow": ("yellow", "lemon-yellow", "mustard"),
    "white": ("white", "snow-white", "off-white"),
    "black": ("black", "jet-black", "coal-black"),
    "brown": ("brown", "chocolate-brown", "chestnut"),
    "orange": ("orange", "tangerine", "bright orange"),
    "purple": ("purple", "violet", "plum"),
    "grey": ("grey", "gray", "silver-grey"),
}
ROOM_SYNONYMS: dict[str, tuple[str, ...]] = {
    "living room": ("living room", "lounge", "sitting room", "family room"),
    "bedroom": ("bedroom", "bedroom", "sleeping room", "bed room"),
    "kitchen": ("kitchen", "kitchen", "kitchen area", "cooking area"),
    "bathroom": ("bathroom", "washroom", "restroom", "bath"),
    "office": ("office", "study", "home office", "workroom"),
    "dining room": ("dining room", "dining area", "dining room", "eating area"),
    "hallway": ("hallway", "hall", "corridor", "entrance hall"),
}
# Relation wordings. {r}, {s}: reference noun phrases ("the red bed"); {rp}: {r} as a
# possessive ("the red bed's"). Mirrored relations have parallel lists of equal length.
RELATION_PHRASES: dict[str, tuple[str, ...]] = {
    "left_of": ("left of {r}", "to the left of {r}", "on {rp} left", "on the left-hand side of {r}",
                "just left of {r}", "at {rp} left side"),
    "right_of": ("right of {r}", "to the right of {r}", "on {rp} right", "on the right-hand side of {r}",
                 "just right of {r}", "at {rp} right side"),
    "in_front_of": ("in front of {r}", "right in front of {r}", "at the front of {r}", "just in front of {r}",
                    "out in front of {r}", "on the front side of {r}"),
    "behind": ("behind {r}", "right behind {r}", "at the back of {r}", "just behind {r}",
               "round the back of {r}", "on the back side of {r}"),
    "next_to": ("next to {r}", "beside {r}", "close to {r}", "right by {r}", "alongside {r}", "near {r}",
                "by {r}", "just next to {r}"),
    "between": ("between {r} and {s}", "in between {r} and {s}", "between {s} and {r}",
                "in the middle, between {r} and {s}", "halfway between {r} and {s}", "in between {s} and {r}"),
}
MIRROR = {"left_of": "right_of", "right_of": "left_of", "in_front_of": "behind", "behind": "in_front_of"}

# Sentence forms: {t} is the target phrase (noun phrase + its clauses). Each tuple entry
# is (form, kind); kinds: plain, polite, indirect.
SENTENCE_FORMS: tuple[tuple[str, str], ...] = (
    ("go to {t}", "plain"), ("walk over to {t}", "plain"), ("head over to {t}", "plain"),
    ("take me to {t}", "plain"), ("make your way to {t}", "plain"), ("get to {t}", "plain"),
    ("approach {t}", "plain"), ("go and find {t}", "plain"), ("look for {t}", "plain"),
    ("search for {t}", "plain"), ("move over to {t}", "plain"), ("stop at {t}", "plain"),
    ("please go to {t}", "polite"), ("could you go to {t}, please?", "polite"),
    ("can you find {t} for me?", "polite"), ("would you mind heading to {t}?", "polite"),
    ("I'd like you to go to {t}", "polite"), ("kindly walk to {t}", "polite"),
    ("please take me to {t}, thanks", "polite"), ("could you bring me over to {t}?", "polite"),
    ("I'm looking for {t}", "indirect"), ("I need to get to {t}", "indirect"),
    ("your goal is {t}", "indirect"), ("the target is {t}", "indirect"),
    ("where is {t}? take me there", "indirect"), ("I want to be at {t}", "indirect"),
    ("can you show me where {t} is?", "indirect"), ("let's go see {t}", "indirect"),
)
# Fronted forms for a relation or room clause: "<Clause>, <verb> {t}".
_FRONTED_VERBS = ("go to {t}", "find {t}", "please go to {t}", "head to {t}", "you'll find {t} - go there")
_THERE_IS = ("{c} there is {a}; go to it", "{c} there's {a} - please go there", "{c} you will see {a}. Walk to it")


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _word(category: str, rng: np.random.Generator) -> str:
    return _pick(rng, CATEGORY_SYNONYMS.get(category, (category.replace("_", " "),)))


def _color(color: str, rng: np.random.Generator) -> str:
    return _pick(rng, COLOR_SYNONYMS.get(color, (color,)))


def _room(room: str, rng: np.random.Generator) -> str:
    key = room.replace("_", " ")
    return _pick(rng, ROOM_SYNONYMS.get(key, (key,)))


def _noun_phrase(category: str, color: str | None, rng: np.random.Generator, article: str = "the",
                 allow_clause: bool = True) -> str:
    """ "the crimson couch", "the couch that is red", "the red-coloured couch", ... """
    noun = _word(category, rng)
    if not color:
        return f"{article} {noun}"
    c = _color(color, rng)
    form = int(rng.integers(4 if allow_clause else 2))
    if form == 0 or (form == 1 and "-" in c):
        return f"{article} {c} {noun}"
    if form == 1:
        return f"{article} {c}-coloured {noun}"
    if form == 2:
        return f"{article} {noun} that is {c}"
    return f"{article} {noun}, the {c} one,"


def _possessive(np_: str) -> str:
    np_ = np_.rstrip(",")
    return np_ + ("'" if np_.endswith("s") else "'s")


def _relation(relation: str, refs: Sequence[ObjectRef], rng: np.random.Generator) -> str:
    phrases = RELATION_PHRASES[relation]
    k = int(rng.integers(len(phrases)))
    nps = [_noun_phrase(r.category, r.color, rng, allow_clause=False) for r in refs]
    return phrases[k].format(r=nps[0], s=nps[-1], rp=_possessive(nps[0]))


def _finish(text: str) -> str:
    text = " ".join(text.replace(",,", ",").replace(", ,", ",").split())
    text = text.replace(",?", "?").replace(", ?", "?").replace(",.", ".").replace(", -", " -")
    text = text.rstrip(",")
    return text[0].upper() + text[1:]


def paraphrase(spec: InstructionSpec, seed: int | Sequence[int] | np.random.Generator = 0,
               kinds: Sequence[str] = ("plain", "polite", "indirect")) -> str:
    """``spec`` in free wording (module docstring); deterministic in (spec, seed).

    ``seed``: an int, a sequence of ints (e.g. ``[seed, crc32(episode id)]``) or a Generator
    (consumed). ``kinds`` restricts the sentence forms (e.g. ``("plain",)``).
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    forms = [f for f, k in SENTENCE_FORMS if k in kinds]
    if not forms:
        raise ValueError(f"paraphrase: no sentence form of kinds {tuple(kinds)}; "
                         f"known kinds: plain, polite, indirect")
    target = _noun_phrase(spec.category, spec.color, rng)
    rel = _relation(spec.relation, spec.references, rng) if spec.relation else None
    room = _room(spec.room, rng) if spec.room else None
    layout = int(rng.integers(4))
    form = _pick(rng, forms)
    if rel is not None and layout == 0:
        # fronted relation: "To the left of the bed there is a chair; go to it"
        rest = target[len("the "):]
        a = ("an " if rest[:1].lower() in "aeiou" else "a ") + rest
        if room:
            a += f" in the {room}"
        clause = rel[0].upper() + rel[1:]
        return _finish(_pick(rng, _THERE_IS).format(c=clause, a=a))
    if rel is not None:
        link = (" ", " that is ", " which is ", ", the one ")[int(rng.integers(4))]
        t = f"{target}{link}{rel}" if not target.endswith(",") else f"{target} {rel}"
    else:
        t = target
    if room and layout in (1, 2):
        # fronted room: "In the kitchen, find the chair ..."
        prefix = _pick(rng, ("in the {r},", "over in the {r},", "in the {r}:", "inside the {r},")).format(r=room)
        return _finish(f"{prefix} {_pick(rng, _FRONTED_VERBS).format(t=t)}")
    if room:
        where = _pick(rng, ("in the {r}", "in the {r}", "inside the {r}", "over in the {r}")).format(r=room)
        # the room after the target noun and before the relation, so it never reads as the reference's
        if rel is not None:
            t = f"{target} {where}, {rel}" if not target.endswith(",") else f"{target} {where}, {rel}"
        else:
            t = f"{target} {where}"
    return _finish(form.format(t=t))


def mirror(spec: InstructionSpec) -> InstructionSpec | None:
    """``spec`` with its directional relation reversed (left <-> right, front <-> behind); None when
    it has none."""
    if spec.relation not in MIRROR:
        return None
    d = spec.to_dict()
    d["relation"] = MIRROR[spec.relation]
    return InstructionSpec.from_dict(d)


def episode_seed(seed: int, episode_id: str) -> list[int]:
    """The paraphrase seed of one episode: stable across processes (crc32, not ``hash``)."""
    return [int(seed), zlib.crc32(str(episode_id).encode())]


def load_free_wording(path: str | os.PathLike) -> dict[str, dict]:
    """A hand-written free-wording file: ``{"instructions": {episode_id: {"template": ..., "free": ...}}}``
    (``envs/free_wording_val.json``); returns the ``instructions`` mapping."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"instruction file {str(p)!r} does not exist (the shipped free-wording set is "
                                f"{FREE_WORDING_VAL})")
    data = json.loads(p.read_text())
    table = data.get("instructions") if isinstance(data, dict) else None
    if not isinstance(table, dict) or not table:
        raise ValueError(f"{p}: expected a JSON object with a non-empty 'instructions' mapping episode ids to "
                         "{'template': ..., 'free': ...}")
    for k, v in table.items():
        if not isinstance(v, dict) or not str(v.get("free", "")).strip():
            raise ValueError(f"{p}: entry {k!r} lacks a non-empty 'free' wording")
    return table


def reword_episodes(episodes: Sequence, paraphrase_instructions: bool = False, seed: int = 0,
                    instructions: str | os.PathLike | None = None) -> list:
    """Copies of ``episodes`` whose ``instruction`` is reworded; the spec, target and goals are unchanged
    and the template wording is kept in ``info["template_instruction"]``.

    * ``instructions``: a free-wording file (``load_free_wording``): each episode takes its entry's
      ``free`` text. An episode missing from the file, or whose template text differs from the file's
      (the file was written for other episodes), is an error: nothing is silently left in template wording.
    * else ``paraphrase_instructions``: ``paraphrase(spec, episode_seed(seed, episode_id))``.
    * else the episodes unchanged.
    """
    if instructions in (None, "", "null", "none", "None") and not paraphrase_instructions:
        return list(episodes)
    table = None if instructions in (None, "", "null", "none", "None") else load_free_wording(instructions)
    out = []
    for ep in episodes:
        template = ep.info.get("template_instruction", ep.instruction)
        if table is not None:
            entry = table.get(str(ep.episode_id))
            if entry is None:
                raise ValueError(f"episode {ep.episode_id} ({ep.scene_id}) has no entry in {instructions}; it "
                                 f"covers {len(table)} episodes: run at most that many (n_episodes)")
            if entry.get("template") not in (None, template):
                raise ValueError(f"episode {ep.episode_id}: {instructions} was written for the template "
                                 f"{entry['template']!r}, but the episode says {template!r}")
            text = str(entry["free"])
        else:
            text = paraphrase(ep.spec, episode_seed(seed, ep.episode_id))
        out.append(dataclasses.replace(ep, instruction=text,
                                       info={**ep.info, "template_instruction": template}))
    return out


FREE_WORDING_VAL = Path(__file__).resolve().parent / "free_wording_val.json"
# The hand-written sets by split: 110 val episodes, and 60 test episodes written later as a held-out check
# of ``envs.instruction_reader`` (generate_episodes(split, n, seed=0), first episodes).
FREE_WORDING = {"val": FREE_WORDING_VAL, "test": FREE_WORDING_VAL.with_name("free_wording_test.json")}

__all__ = ["FREE_WORDING", "FREE_WORDING_VAL", "load_free_wording", "reword_episodes", "CATEGORY_SYNONYMS", "COLOR_SYNONYMS", "ROOM_SYNONYMS", "RELATION_PHRASES", "SENTENCE_FORMS",
           "paraphrase", "mirror", "episode_seed"]
