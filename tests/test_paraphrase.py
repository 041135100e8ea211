"""The paraphrase layer (envs/paraphrase.py), the task option that uses it and the hand-written
free-wording val set (envs/free_wording_val.json)."""

from __future__ import annotations

import difflib
import json
import re

import numpy as np
import pytest

from envs.furniture import COLORS
from envs.gym_env import INSTRUCTION_CHARSET, INSTRUCTION_MAX_LENGTH
from envs.instructions import DIRECTIONAL, RELATIONS, InstructionSpec, ObjectRef
from envs.paraphrase import (CATEGORY_SYNONYMS, COLOR_SYNONYMS, FREE_WORDING, FREE_WORDING_VAL, RELATION_PHRASES, ROOM_SYNONYMS,
                             SENTENCE_FORMS, load_free_wording, mirror, paraphrase, reword_episodes)
from envs.scene import FURNITURE_CATEGORIES

ROOMS = ("living room", "bedroom", "kitchen", "bathroom", "office")


def random_spec(rng: np.random.Generator) -> InstructionSpec:
    cats = list(FURNITURE_CATEGORIES)
    cat = cats[int(rng.integers(len(cats)))]
    color = [None, *COLORS][int(rng.integers(len(COLORS) + 1))]
    room = [None, *ROOMS][int(rng.integers(len(ROOMS) + 1))]
    rel = [None, *RELATIONS][int(rng.integers(len(RELATIONS) + 1))]
    others = [c for c in cats if c != cat]
    refs = ()
    if rel is not None:
        k = 2 if rel == "between" else 1
        picks = rng.choice(len(others), k, replace=False)
        refs = tuple(ObjectRef(others[int(i)], [None, *COLORS][int(rng.integers(len(COLORS) + 1))]) for i in picks)
    return InstructionSpec(cat, color, room, rel, refs)


def _has_any(text: str, options) -> bool:
    t = text.lower()
    return any(re.search(r"\b" + re.escape(o.lower()) + r"\b", t) for o in options)


def test_paraphrase_is_deterministic_and_varied():
    spec = InstructionSpec("chair", "blue", "bedroom", "left_of", (ObjectRef("bed", "red"),))
    assert paraphrase(spec, 3) == paraphrase(spec, 3)
    assert paraphrase(spec, [1, 2]) == paraphrase(spec, [1, 2])
    texts = {paraphrase(spec, s) for s in range(40)}
    assert len(texts) >= 35  # 40 seeds, nearly all different sentences
    assert spec.to_text() not in texts


def test_paraphrase_keeps_every_part_of_the_spec_and_fits_the_env():
    """Over 600 random specs: the text names a synonym of the target's category, its colour, its room,
    each reference, and a wording of the relation; it fits the observation's Text space."""
    rng = np.random.default_rng(0)
    kinds = set()
    for i in range(600):
        spec = random_spec(rng)
        text = paraphrase(spec, i)
        assert 0 < len(text) <= INSTRUCTION_MAX_LENGTH and set(text) <= set(INSTRUCTION_CHARSET), text
        assert _has_any(text, CATEGORY_SYNONYMS[spec.category]), (spec, text)
        if spec.color:
            assert _has_any(text, COLOR_SYNONYMS[spec.color]), (spec, text)
        if spec.room:
            assert _has_any(text, ROOM_SYNONYMS[spec.room]), (spec, text)
        for ref in spec.references:
            assert _has_any(text, CATEGORY_SYNONYMS[ref.category]), (spec, text)
            if ref.color:
                assert _has_any(text, COLOR_SYNONYMS[ref.color]), (spec, text)
        if spec.relation:
            heads = {p.split("{")[0].strip().lower() for p in RELATION_PHRASES[spec.relation]}
            heads |= {"left", "right"} if spec.relation in ("left_of", "right_of") else set()
            assert any(h and h in text.lower() for h in heads), (spec, text)
            other = {"left_of": "right", "right_of": "left"}.get(spec.relation)
            if other:  # never the opposite side's word
                rest = re.sub(r"right (in front|behind|by)", "", text.lower())
                assert not re.search(r"\b" + other + r"\b", rest), (spec, text)
        else:
            assert not any(w in text.lower() for w in (" left", "behind", "beside", "between")), (spec, text)
        kinds.add(text.split()[0].lower())
    assert len(kinds) >= 15  # many sentence openings, not one template


def test_sentence_kinds_can_be_restricted():
    spec = InstructionSpec("sofa", "grey")
    polite = {f.format(t="X") for f, k in SENTENCE_FORMS if k == "polite"}
    for s in range(30):
        text = paraphrase(spec, s, kinds=("polite",))
        assert re.search(r"please|could you|can you|would you|i'd like|kindly", text.lower()), text
    assert polite
    with pytest.raises(ValueError, match="no sentence form"):
        paraphrase(spec, 0, kinds=("shouting",))


def test_mirror_changes_only_the_relation_words():
    spec = InstructionSpec("chair", "blue", None, "left_of", (ObjectRef("sofa"),))
    m = mirror(spec)
    assert m.relation == "right_of" and m.references == spec.references and mirror(m).relation == "left_of"
    assert mirror(InstructionSpec("chair", None, None, "next_to", (ObjectRef("sofa"),))) is None
    relation_words = {"left", "right", "left-hand", "right-hand", "in", "front", "of", "behind", "back", "out",
                      "round", "the", "at", "on", "to", "side", "just"}
    for rel in DIRECTIONAL:
        s = InstructionSpec("lamp", "red", "office", rel, (ObjectRef("bed", "white"),))
        for seed in range(20):
            a, b = paraphrase(s, seed).lower().split(), paraphrase(mirror(s), seed).lower().split()
            changed = [w for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b).get_opcodes() if op != "equal"
                       for w in a[i1:i2] + b[j1:j2]]
            assert changed and set(changed) <= relation_words, (a, b)


def test_reword_episodes_paraphrase_and_free_file(tmp_path, nav_episodes):
    eps = list(nav_episodes)
    para = reword_episodes(eps, paraphrase_instructions=True, seed=0)
    for e, p in zip(eps, para):
        assert p.instruction != e.instruction and p.info["template_instruction"] == e.instruction
        assert p.instruction_spec == e.instruction_spec and p.target_id == e.target_id
        assert np.array_equal(p.view_points, e.view_points)
    assert [p.instruction for p in reword_episodes(eps, True, 0)] == [p.instruction for p in para]
    assert [p.instruction for p in reword_episodes(eps, True, 1)] != [p.instruction for p in para]
    assert reword_episodes(eps) == eps and eps[0].instruction == nav_episodes[0].instruction  # no change, no mutation

    table = {e.episode_id: {"template": e.instruction, "free": f"hand wording {k}"} for k, e in enumerate(eps)}
    f = tmp_path / "free.json"
    f.write_text(json.dumps({"instructions": table}))
    free = reword_episodes(eps, instructions=f)
    assert [e.instruction for e in free] == [f"hand wording {k}" for k in range(len(eps))]
    del table[eps[-1].episode_id]
    f.write_text(json.dumps({"instructions": table}))
    with pytest.raises(ValueError, match="has no entry"):
        reword_episodes(eps, instructions=f)
    table[eps[-1].episode_id] = {"template": "go to the wrong thing", "free": "x"}
    f.write_text(json.dumps({"instructions": table}))
    with pytest.raises(ValueError, match="was written for the template"):
        reword_episodes(eps, instructions=f)


def test_env_option_rewords_the_observation(nav_episodes):
    from envs.gym_env import ObjectNavEnv

    env = ObjectNavEnv(episodes=list(nav_episodes), width=32, height=32, paraphrase=True, paraphrase_seed=0)
    obs, info = env.reset(seed=0)
    ep = env.episode
    assert obs["instruction"] == ep.instruction != ep.info["template_instruction"]
    assert obs["instruction"] == paraphrase(ep.spec, [0, __import__("zlib").crc32(ep.episode_id.encode())])
    env.close()


def test_cli_task_options():
    from omegaconf import OmegaConf

    from agent.cli import env_kwargs, wording_label

    base = {"env": {"width": 32, "height": 32, "hfov_deg": 79.0, "max_depth": 10.0, "backend": "open3d",
                    "threads": 1},
            "task": {"max_episode_steps": 10, "success_distance": 0.1, "episode_seed": 0, "paraphrase": False,
                     "paraphrase_seed": 0, "instructions": None}}
    cfg = OmegaConf.create(base)
    assert "paraphrase" not in env_kwargs(cfg) and wording_label(cfg) == "template"
    cfg.task.paraphrase = True
    assert env_kwargs(cfg)["paraphrase"] is True and wording_label(cfg) == "paraphrase(seed=0)"
    cfg.task.instructions = "free"
    assert env_kwargs(cfg)["instructions"] == str(FREE_WORDING_VAL) and wording_label(cfg).startswith("free(")
    cfg.split = "test"  # the split's own hand-written set
    assert env_kwargs(cfg)["instructions"] == str(FREE_WORDING["test"])
    cfg.split = "train"
    with pytest.raises(ValueError, match="no hand-written set for split 'train'"):
        env_kwargs(cfg)


@pytest.mark.parametrize("split, at_least", [("val", 100), ("test", 60)])
def test_shipped_free_wording_set(split, at_least):
    """Hand-written instructions (110 val, 60 test), each unlike any generator output for its episode."""
    table = load_free_wording(FREE_WORDING[split])
    assert len(table) >= at_least
    data = json.loads(FREE_WORDING[split].read_text())
    assert data["split"] == split and int(data["episode_seed"]) == 0
    for k, v in table.items():
        free, tmpl = v["free"], v["template"]
        assert free.strip() and free != tmpl and set(free) <= set(INSTRUCTION_CHARSET), (k, free)
        spec = InstructionSpec.from_dict(v["spec"])
        assert tmpl == spec.to_text()
        generated = {spec.to_text(t) for t in range(144)} | {paraphrase(spec, s) for s in range(200)}
        assert free not in generated, (k, free)
    assert len({v["free"] for v in table.values()}) == len(table)


def test_shipped_free_wording_matches_the_nav_episodes():
    """The file's first episodes are generate_episodes('val', n, seed=0)'s (what `spatialnav eval split=val`
    runs), so template and free wording run on the same episodes."""
    from envs.episodes import generate_episodes

    for split in ("val", "test"):
        eps = generate_episodes(split, 6, seed=0)
        free = reword_episodes(eps, instructions=FREE_WORDING[split])
        table = load_free_wording(FREE_WORDING[split])
        assert [e.instruction for e in free] == [table[e.episode_id]["free"] for e in eps]
