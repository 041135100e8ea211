"""Spatial instruction grammar, its resolver, and unique-description generation.

An instruction names one target instance by category, optionally its colour
and room, and optionally a spatial relation to one or two *reference* objects:

    spec   := category [colour] [room] [relation reference+]
    relation in {left_of, right_of, in_front_of, behind, next_to, between}

Frame convention (intrinsic frame of the reference object X)
------------------------------------------------------------
Every relation is read in X's own frame, as for a person using X and facing out
of its front (``ObjectInstance.front``, its local +x axis):

* "in front of X": on X's front side; "behind X": on the opposite side.
* "left of X" / "right of X": on X's own left (``ObjectInstance.left``, front
  rotated +90 deg) / right. So "left of the sofa" is the left of someone sitting
  on it, which is the viewer's right when looking at the sofa from the front.
* "next to X": the instance matching the target's description that is nearest
  to X, with a footprint gap (distance between box surfaces) of at most 1.2 m.
* "between X and Y": the target's centre lies in a corridor around segment XY.

Geometry, with d = c_T - c_X (box centres, xy) expressed in X's frame as
u = d . front_X (forward) and v = d . left_X (lateral), and (hx, hy) X's
half-extents along front/left. The *excess* e_u = |u| - hx, e_v = |v| - hy is
how far the target's centre lies outside X's box along each axis.

* left_of:      v > 0, e_v >= m and e_v >= e_u + m      (right_of: v < 0)
* in_front_of:  u > 0, e_u >= m and e_u >= e_v + m      (behind:   u < 0)
  i.e. the target lies clearly beyond that face of X and further out along that
  axis than along the other one; the diagonal zones from X's corners, of width
  m, belong to no relation. All four also need a footprint gap <= 2.0 m.
* between:  t = (c_T - c_X).(c_Y - c_X) / |c_Y - c_X|^2 in [0.15, 0.85] and the
  perpendicular distance from c_T to the line XY <= 0.6 m, |XY| <= 4.5 m.
* next_to:  gap(T, X) <= 1.2 m and T nearest to X among the candidates.

All relations also need the target and its references in the same room when
rooms are annotated. ``resolve`` uses the strict margins above (m = 0.15 m).

Soundness for a human: ``describe`` only emits a relational spec if, in
addition, no *other* candidate satisfies the relation under loose margins
(m = -0.15 m, gap <= 3 m, between t in [-0.05, 1.05] and perpendicular <= 1.0 m,
next_to: every other candidate at least 0.75 m further from X than the target).
So no distractor sits anywhere near the boundary of the relation's region.
References must themselves be unique in the scene by category or colour +
category, and differ in category from the target; a directional relation's
reference must have a recognisable front (``HAS_FRONT``: not a table, plant or
lamp).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from envs.scene import ObjectInstance

RELATIONS = ("left_of", "right_of", "in_front_of", "behind", "next_to", "between")
DIRECTIONAL = ("left_of", "right_of", "in_front_of", "behind")
# Categories whose front a person recognises (a seat, a screen, doors, a bed's
# foot). Tables, plants and lamps look the same from every side, so "left of
# the table" has no intrinsic reading: describe() never uses them as the
# reference of a directional relation.
HAS_FRONT = frozenset({"chair", "sofa", "bed", "cabinet", "tv", "toilet", "bookshelf"})


@dataclass(frozen=True)
class RelationMargins:
    """Thresholds of the relation predicates (metres unless noted)."""

    side: float = 0.15  # m: how far beyond the face / off the diagonal
    max_gap: float = 2.0  # directional relations: max footprint gap to X
    next_to_gap: float = 1.2  # next_to: max footprint gap to X
    next_to_lead: float = 0.0  # next_to: others must be this much further (loose check)
    between_t: tuple[float, float] = (0.15, 0.85)  # projection range along XY
    between_perp: float = 0.6  # corridor half-width
    between_max_len: float = 4.5  # |XY|


STRICT = RelationMargins()
LOOSE = RelationMargins(side=-0.15, max_gap=3.0, next_to_gap=1.2, next_to_lead=0.75,
                        between_t=(-0.05, 1.05), between_perp=1.0, between_max_len=6.0)


# -- geometry --------------------------------------------------------------------

def _footprint(o: ObjectInstance) -> np.ndarray:
    """The 4 corners (4, 2) of the box's xy footprint."""
    hx, hy = o.size[0] / 2, o.size[1] / 2
    local = np.array([[hx, hy], [-hx, hy], [-hx, -hy], [hx, -hy]])
    return o.center[:2] + local[:, :1] * o.front + local[:, 1:] * o.left


def point_box_distance_xy(points: np.ndarray, o: ObjectInstance) -> np.ndarray:
    """Distance (N,) from xy points (N, 2) to the box's xy footprint (0 inside)."""
    p = np.asarray(points, np.float64).reshape(-1, 2) - o.center[:2]
    u = np.abs(p @ o.front) - o.size[0] / 2
    v = np.abs(p @ o.left) - o.size[1] / 2
    return np.hypot(np.maximum(u, 0.0), np.maximum(v, 0.0))


def footprint_gap(a: ObjectInstance, b: ObjectInstance) -> float:
    """Distance between the xy footprints of two oriented boxes (0 if they overlap).

    Separating-axis test for overlap; otherwise, for two disjoint convex polygons
    the closest pair involves a vertex of one, so the gap is the minimum
    vertex-to-box distance both ways.
    """
    ca, cb = _footprint(a), _footprint(b)
    overlap = True
    for axis in (a.front, a.left, b.front, b.left):
        pa, pb = ca @ axis, cb @ axis
        if pa.max() < pb.min() or pb.max() < pa.min():
            overlap = False
            break
    if overlap:
        return 0.0
    return float(min(point_box_distance_xy(ca, b).min(), point_box_distance_xy(cb, a).min()))


def _same_room(a: ObjectInstance, b: ObjectInstance) -> bool:
    return not a.room or not b.room or a.room == b.room


def directional_holds(rel: str, t: ObjectInstance, x: ObjectInstance,
                      margins: RelationMargins = STRICT) -> bool:
    """Whether ``t`` is left_of/right_of/in_front_of/behind ``x`` (x's intrinsic frame)."""
    if t.id == x.id or not _same_room(t, x):
        return False
    d = t.center[:2] - x.center[:2]
    u, v = float(d @ x.front), float(d @ x.left)
    e_u, e_v = abs(u) - x.size[0] / 2, abs(v) - x.size[1] / 2
    m = margins.side
    if rel in ("left_of", "right_of"):
        side_ok = v > 0 if rel == "left_of" else v < 0
        ok = side_ok and e_v >= m and e_v >= e_u + m
    elif rel in ("in_front_of", "behind"):
        side_ok = u > 0 if rel == "in_front_of" else u < 0
        ok = side_ok and e_u >= m and e_u >= e_v + m
    else:
        raise ValueError(f"not a directional relation: {rel!r}; expected one of {DIRECTIONAL}")
    return bool(ok and footprint_gap(t, x) <= margins.max_gap)


def between_holds(t: ObjectInstance, x: ObjectInstance, y: ObjectInstance,
                  margins: RelationMargins = STRICT) -> bool:
    """Whether ``t``'s centre lies in the corridor around segment x-y (centres)."""
    if x.id == y.id or t.id in (x.id, y.id):
        return False
    if not (_same_room(t, x) and _same_room(t, y)):
        return False
    a, b, p = x.center[:2], y.center[:2], t.center[:2]
    ab = b - a
    length2 = float(ab @ ab)
    if length2 < 1e-12 or length2 > margins.between_max_len ** 2:
        return False
    s = float((p - a) @ ab) / length2
    perp = abs(float(ab[0] * (p - a)[1] - ab[1] * (p - a)[0])) / np.sqrt(length2)
    lo, hi = margins.between_t
    return bool(lo <= s <= hi and perp <= margins.between_perp)


# -- the spec -----------------------------------------------------------------------

@dataclass(frozen=True)
class ObjectRef:
    """A reference object's description: category and optional colour."""

    category: str
    color: str | None = None

    def matches(self, o: ObjectInstance) -> bool:
        return o.category == self.category and (self.color is None or o.color == self.color)

    def to_dict(self) -> dict[str, Any]:
        return {"category": self.category, "color": self.color}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ObjectRef":
        return cls(category=str(d["category"]), color=d.get("color"))


_VERBS = ("go to", "find", "navigate to", "walk to", "head to", "go to", "locate", "move to")
_REL_PHRASES = {
    "left_of": ("left of {r}", "to the left of {r}", "on the left side of {r}"),
    "right_of": ("right of {r}", "to the right of {r}", "on the right side of {r}"),
    "in_front_of": ("in front of {r}", "in front of {r}", "facing the front of {r}"),
    "behind": ("behind {r}", "at the back of {r}", "behind {r}"),
    "next_to": ("next to {r}", "beside {r}", "by {r}"),
    "between": ("between {r} and {s}", "between {r} and {s}", "in between {r} and {s}"),
}
NUM_TEMPLATES = 24


def relation_phrases() -> dict[str, tuple[str, ...]]:
    """The grammar's wordings of each relation ("left of {r}", ...), by relation name: what a
    reader needs to tell a relation instruction from its text."""
    return {k: tuple(v) for k, v in _REL_PHRASES.items()}

_DISPLAY = {"tv": "TV"}


def _words(name: str) -> str:
    return _DISPLAY.get(name, name.replace("_", " "))


def _np(category: str, color: str | None) -> str:
    return "the " + (f"{color} " if color else "") + _words(category)


@dataclass
class InstructionSpec:
    """A structured instruction. ``template`` only selects the wording of ``to_text``."""

    category: str
    color: str | None = None
    room: str | None = None
    relation: str | None = None
    references: tuple[ObjectRef, ...] = ()
    template: int = 0

    def __post_init__(self) -> None:
        self.references = tuple(r if isinstance(r, ObjectRef) else ObjectRef(**r) for r in self.references)
        if self.relation is None:
            if self.references:
                raise ValueError("InstructionSpec: references given without a relation")
        else:
            if self.relation not in RELATIONS:
                raise ValueError(f"InstructionSpec: unknown relation {self.relation!r}; expected one of {RELATIONS}")
            need = 2 if self.relation == "between" else 1
            if len(self.references) != need:
                raise ValueError(f"InstructionSpec: relation {self.relation!r} needs {need} reference(s), "
                                 f"got {len(self.references)}")

    def to_text(self, template: int | None = None) -> str:
        """Render a natural sentence; ``template`` (default: the spec's) picks the wording."""
        k = self.template if template is None else int(template)
        verb = _VERBS[k % len(_VERBS)]
        target = _np(self.category, self.color)
        room = f" in the {_words(self.room)}" if self.room else ""
        if self.relation is None:
            return f"{verb} {target}{room}"
        refs = [_np(r.category, r.color) for r in self.references]
        phrases = _REL_PHRASES[self.relation]
        rel = phrases[(k // len(_VERBS)) % len(phrases)].format(r=refs[0], s=refs[-1])
        if room:
            # Room first, relation in a trailing clause, so "in the kitchen" never
            # reads as attaching to the reference.
            sep = ", " if k % 2 else " that is "
            return f"{verb} {target}{room}{sep}{rel}"
        return f"{verb} {target} {rel}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "category": self.category,
            "color": self.color,
            "room": self.room,
            "relation": self.relation,
            "references": [r.to_dict() for r in self.references],
            "template": self.template,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "InstructionSpec":
        try:
            return cls(
                category=str(d["category"]),
                color=d.get("color"),
                room=d.get("room"),
                relation=d.get("relation"),
                references=tuple(ObjectRef.from_dict(r) for r in d.get("references", ())),
                template=int(d.get("template", 0)),
            )
        except KeyError as e:
            raise ValueError(f"instruction spec {d!r} lacks key {e}") from None


# -- resolver -------------------------------------------------------------------------

def _matches_target(spec: InstructionSpec, o: ObjectInstance) -> bool:
    return (o.category == spec.category
            and (spec.color is None or o.color == spec.color)
            and (spec.room is None or o.room == spec.room))


def _relation_filter(relation: str, cands: list[ObjectInstance], refsets: list[list[ObjectInstance]],
                     margins: RelationMargins) -> list[ObjectInstance]:
    if relation in DIRECTIONAL:
        return [c for c in cands if any(directional_holds(relation, c, x, margins) for x in refsets[0])]
    if relation == "between":
        return [c for c in cands
                if any(between_holds(c, x, y, margins) for x in refsets[0] for y in refsets[1])]
    if relation == "next_to":
        keep: dict[int, ObjectInstance] = {}
        for x in refsets[0]:
            near = [(footprint_gap(c, x), c) for c in cands if _same_room(c, x) and c.id != x.id]
            near = [(g, c) for g, c in near if g <= margins.next_to_gap]
            if near:
                g_min = min(g for g, _ in near)
                for g, c in near:
                    if g <= g_min + 1e-9:
                        keep[c.id] = c
        return [c for c in cands if c.id in keep]
    raise ValueError(f"unknown relation {relation!r}; expected one of {RELATIONS}")


def resolve(spec: InstructionSpec, instances: Sequence[ObjectInstance]) -> list[ObjectInstance]:
    """All instances that ``spec`` describes, evaluated from scratch (scene order).

    Attributes filter candidates; a relation keeps a candidate if it holds (strict
    margins) for *some* instance matching each reference description, so an
    ambiguous reference makes the result larger, never silently picks one.
    Reference instances are never their own targets.
    """
    cands = [o for o in instances if _matches_target(spec, o)]
    if spec.relation is None:
        return cands
    refsets = [[o for o in instances if r.matches(o)] for r in spec.references]
    if any(not rs for rs in refsets):
        return []
    ref_ids = {o.id for rs in refsets for o in rs}
    cands = [c for c in cands if c.id not in ref_ids]
    return _relation_filter(spec.relation, cands, refsets, STRICT)


# -- describe: the simplest unique description ------------------------------------------------

def _unique_ref(o: ObjectInstance, instances: Sequence[ObjectInstance]) -> ObjectRef | None:
    """The shortest description (category, else colour + category) unique to ``o``."""
    options = [ObjectRef(o.category)] + ([ObjectRef(o.category, o.color)] if o.color else [])
    for ref in options:
        if sum(ref.matches(p) for p in instances) == 1:
            return ref
    return None


def _sound(spec: InstructionSpec, target: ObjectInstance, instances: Sequence[ObjectInstance]) -> bool:
    """resolve(spec) == [target] and, for relations, no distractor satisfies the loose relation."""
    got = resolve(spec, instances)
    if len(got) != 1 or got[0].id != target.id:
        return False
    if spec.relation is None:
        return True
    refsets = [[o for o in instances if r.matches(o)] for r in spec.references]
    if any(len(rs) != 1 for rs in refsets):
        return False
    ref_ids = {rs[0].id for rs in refsets}
    others = [o for o in instances if _matches_target(spec, o) and o.id != target.id and o.id not in ref_ids]
    if spec.relation == "next_to":
        x = refsets[0][0]
        g_t = footprint_gap(target, x)
        return all(not _same_room(o, x) or footprint_gap(o, x) >= g_t + LOOSE.next_to_lead for o in others)
    return not _relation_filter(spec.relation, others, refsets, LOOSE)


def describe(target: ObjectInstance, instances: Sequence[ObjectInstance],
             rng: np.random.Generator | None = None, p_relation: float = 0.3,
             p_room: float = 0.2, p_extra_color: float = 0.3) -> InstructionSpec | None:
    """The simplest sound description singling out ``target``, with some variety.

    Order of preference: category; colour + category; category (+ colour) + room;
    then a relation to a reference that is unique by category or colour +
    category. With probability ``p_relation`` a relational description is used
    even when attributes suffice, ``p_room`` adds the room when it keeps the
    spec sound, ``p_extra_color`` adds a redundant colour to relational specs.
    Guarantees ``resolve(spec, instances) == [target]``; returns None when no
    sound description exists (the target should then not be used).
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    if target.id not in {o.id for o in instances}:
        raise ValueError(f"describe: target id {target.id} is not among the {len(instances)} instances")
    cat, color, room = target.category, target.color or None, target.room or None
    template = int(rng.integers(NUM_TEMPLATES))

    # Attribute-only options, simplest first; (None, None) means category alone.
    attr_options = [(None, None)]
    if color is not None:
        attr_options.append((color, None))
    if room is not None:
        attr_options.append((None, room))
        if color is not None:
            attr_options.append((color, room))
    simple = None
    for c, r in attr_options:
        spec = InstructionSpec(cat, c, r, template=template)
        if _sound(spec, target, instances):
            simple = spec
            break

    relational: list[InstructionSpec] = []
    want_relation = simple is None or rng.random() < p_relation
    if want_relation:
        relational = _relational_specs(target, instances, color, template)
    if simple is not None and (not relational or not want_relation):
        spec = simple
    elif relational:
        spec = relational[int(rng.integers(len(relational)))]
        if color is not None and spec.color is None and rng.random() < p_extra_color:
            spec = _replace(spec, color=color)
    else:
        return None

    if room is not None and spec.room is None and rng.random() < p_room:
        with_room = _replace(spec, room=room)
        if _sound(with_room, target, instances):
            spec = with_room
    if not _sound(spec, target, instances):  # adding attributes is monotone; guard anyway
        raise RuntimeError(f"describe produced an unsound spec {spec.to_dict()} for instance {target.id}")
    return spec


def _replace(spec: InstructionSpec, **kw) -> InstructionSpec:
    d = spec.to_dict()
    d.update(kw)
    return InstructionSpec.from_dict(d)


def _relational_specs(target: ObjectInstance, instances: Sequence[ObjectInstance],
                      color: str | None, template: int) -> list[InstructionSpec]:
    """Every sound relational spec for ``target`` with the fewest target attributes."""
    refs = [(o, r) for o in instances
            if o.id != target.id and o.category != target.category
            and _same_room(o, target) and (r := _unique_ref(o, instances)) is not None]
    out: list[InstructionSpec] = []
    for tcolor in ([None, color] if color is not None else [None]):
        for o, r in refs:
            rels = (DIRECTIONAL if o.category in HAS_FRONT else ()) + ("next_to",)
            for rel in rels:
                spec = InstructionSpec(target.category, tcolor, None, rel, (r,), template)
                if _sound(spec, target, instances):
                    out.append(spec)
        for (o1, r1), (o2, r2) in itertools.combinations(refs, 2):
            if r1 == r2:
                continue
            spec = InstructionSpec(target.category, tcolor, None, "between", (r1, r2), template)
            if _sound(spec, target, instances):
                out.append(spec)
        if out:  # fewest target attributes first: no colour unless needed
            break
    return out
