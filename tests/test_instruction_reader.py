"""envs.instruction_reader: free wording read back into the grammar's spec, and the agents that use it."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from envs.instruction_reader import read_instruction, reading_accuracy, same_spec
from envs.instructions import DIRECTIONAL, HAS_FRONT, NUM_TEMPLATES, RELATIONS, InstructionSpec, ObjectRef
from envs.paraphrase import (CATEGORY_SYNONYMS, COLOR_SYNONYMS, FREE_WORDING_VAL, ROOM_SYNONYMS, mirror,
                             paraphrase)


def _random_specs(n: int, seed: int) -> list[InstructionSpec]:
    rng = np.random.default_rng(seed)
    cats, cols, rooms = list(CATEGORY_SYNONYMS), list(COLOR_SYNONYMS), list(ROOM_SYNONYMS)
    out = []
    for _ in range(n):
        c = cats[rng.integers(len(cats))]
        rel = RELATIONS[rng.integers(len(RELATIONS))] if rng.random() < 0.6 else None
        refs = []
        if rel:
            pool = [x for x in cats if x != c and (rel not in DIRECTIONAL or x in HAS_FRONT)]
            for i in rng.choice(len(pool), 2 if rel == "between" else 1, replace=False):
                refs.append(ObjectRef(pool[i], cols[rng.integers(len(cols))] if rng.random() < 0.4 else None))
        out.append(InstructionSpec(c, cols[rng.integers(len(cols))] if rng.random() < 0.5 else None,
                                   rooms[rng.integers(len(rooms))] if rng.random() < 0.3 else None,
                                   rel, tuple(refs), int(rng.integers(NUM_TEMPLATES))))
    return out


def test_every_template_wording_reads_back_to_its_spec_and_is_passed_on_unchanged():
    for spec in _random_specs(400, seed=1):
        for k in (spec.template, (spec.template + 7) % NUM_TEMPLATES):
            text = spec.to_text(k)
            r = read_instruction(text)
            assert same_spec(r.spec, spec), (text, r.spec)
            assert r.is_template and r.canonical == text


def test_generated_paraphrases_read_back_to_their_spec():
    specs = _random_specs(600, seed=2)
    pairs = [(paraphrase(s, i), s) for i, s in enumerate(specs)]
    acc = reading_accuracy(pairs)
    assert acc["exact"] == 1.0, acc
    text, spec = pairs[0]
    r = read_instruction(text)
    assert not r.is_template and r.canonical == r.spec.to_text(0)
    # the hard negative differs only in the relation, and is read as such
    for s in specs:
        m = mirror(s)
        if m is not None:
            assert read_instruction(paraphrase(m, 5)).spec.relation == m.relation


@pytest.mark.parametrize("path", [FREE_WORDING_VAL, FREE_WORDING_VAL.with_name("free_wording_test.json")])
def test_hand_written_sets_read_back(path):
    table = json.loads(path.read_text())["instructions"]
    pairs = [(v["free"], InstructionSpec.from_dict(v["spec"])) for v in table.values()]
    assert len(pairs) >= 60
    acc = reading_accuracy(pairs)
    assert acc["exact"] == 1.0, acc


def test_the_accuracy_command_reports_each_set_and_wording(capsys, tmp_path):
    from envs.instruction_reader import main

    out = main([])
    assert set(out) == {"free_wording_val.json:free", "free_wording_val.json:template",
                        "free_wording_test.json:free", "free_wording_test.json:template"}
    assert "free_wording_test.json free     n= 60 exact 1.000" in capsys.readouterr().out
    bad = tmp_path / "no_spec.json"
    bad.write_text(json.dumps({"instructions": {"e0": {"free": "go to the couch"}}}))
    with pytest.raises(ValueError, match="nothing to check"):
        main([str(bad)])


@pytest.mark.parametrize("text, want", [
    # a verb that looks like a relation, and a colour after the noun
    ("I left my keys on the chair that is black. Can you head over there?", "go to the black chair"),
    # "right" as an intensifier; "next to that chair" names the target, not a reference
    ("There's a chair sitting right in front of the cupboard; go and stand next to that chair.",
     "go to the chair in front of the cabinet"),
    # a pronoun pointing back past the noun it qualifies, a possessive, and "between them"
    ("Look at the couch: the plant on its left is where you should go.", "go to the plant left of the sofa"),
    ("Walk to the lamp at the bed's foot end, on the bed's right.", "go to the lamp right of the bed"),
    ("The telly and the bookcase: between them there's an armchair. Go to that chair.",
     "go to the chair between the TV and the bookshelf"),
    # "that's next to" is not a possessive; rooms before categories; multi-word colours before lamps
    ("Head for the bed that's next to the orange cupboard.", "go to the bed next to the orange cabinet"),
    ("Over in the bed room, find the light blue loo.", "go to the blue toilet in the bedroom"),
])
def test_english_the_rules_are_for(text, want):
    r = read_instruction(text)
    assert r.canonical == want


def test_a_sentence_naming_no_known_category_is_kept_as_it_is():
    r = read_instruction("Take me to the piano, please.")
    assert r.spec is None and r.canonical == "Take me to the piano, please." and not r.is_template
    with pytest.raises(TypeError, match="string"):
        read_instruction(None)


# ----------------------------------------------------------------------------- agents
def _free_episode(nav_episodes):
    ep = nav_episodes[0]
    assert ep.spec.category in CATEGORY_SYNONYMS
    text = paraphrase(ep.spec, 3)
    assert text != ep.instruction
    return dataclasses.replace(ep, instruction=text), text


@pytest.mark.parametrize("read", [True, False])
def test_world_model_agent_gives_its_models_the_template_wording(nav_episodes, tiny_pipeline, read):
    from agent.fair_play import SensorView, public_context, public_info
    from agent.world_model_agent import WorldModelAgent
    from envs.gym_env import ObjectNavEnv

    ep, text = _free_episode(nav_episodes)
    env = ObjectNavEnv(episodes=[ep], width=32, height=32)
    seen = []
    imagine = tiny_pipeline.imagine

    def spy(frames, indices, instruction, **kw):
        seen.append(instruction)
        return imagine(frames, indices, instruction, **kw)

    tiny_pipeline.imagine = spy
    try:
        agent = WorldModelAgent(env=SensorView(env), seed=0, pipeline=tiny_pipeline, num_context=3, num_steps=2,
                                goal_check=None, read_instruction=read)
        obs, info = env.reset(options={"episode_index": 0})
        assert obs["instruction"] == text
        agent.reset(obs, public_info(info), public_context(env.unwrapped.context_tour(n_frames=8)))
        agent.act(obs)
    finally:
        tiny_pipeline.imagine = imagine
        env.close()
    want = read_instruction(text).canonical if read else text
    assert seen and set(seen) == {want}
    assert agent.episode_stats()["instruction"] == want
    assert (want == ep.spec.to_text(0)) == read


def test_frontier_clip_scores_views_against_the_template_wording(nav_episodes, tmp_path):
    from agent.fair_play import SensorView, public_info
    from agent.frontier_clip import FrontierClipAgent
    from envs.gym_env import ObjectNavEnv
    from world_model.ssg.clip import SmallClipSpec, build_small_clip, build_word_tokenizer, grammar_vocabulary

    spec = SmallClipSpec(image_size=32, patch_size=8, vision_layers=1, vision_width=32, vision_heads=2,
                         text_layers=1, text_width=32, text_heads=2, projection_dim=32, max_text_len=24)
    build_small_clip(build_word_tokenizer(grammar_vocabulary()), spec, seed=0).save_pretrained(tmp_path / "clip")
    ep, text = _free_episode(nav_episodes)
    env = ObjectNavEnv(episodes=[ep], width=32, height=32)
    obs, info = env.reset(options={"episode_index": 0})
    texts = {}
    for read in (True, False):
        agent = FrontierClipAgent(env=SensorView(env), clip=str(tmp_path / "clip"), read_instruction=read)
        agent.reset(obs, public_info(info))
        texts[read] = agent.episode_stats()["instruction"]
        # the value map's text embedding is the one of that wording
        want = agent.value_map.clip.encode_texts([texts[read]])
        assert np.allclose(agent.value_map.text.cpu().numpy(), want.detach().cpu().numpy(), atol=1e-6)
    env.close()
    assert texts == {True: ep.spec.to_text(0), False: text}
