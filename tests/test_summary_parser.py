"""The summary as a carrier: state_from_summary reads the library's own summaries (and edits) back into states."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys_pref.core.ranking import top_k
from recsys_pref.data import make_synthetic
from recsys_pref.explain.explainer import Explainer
from recsys_pref.explain.summary import LENGTHS, whole_percents
from recsys_pref.explain.summary_parser import SummaryError, parse, state_from_summary
from recsys_pref.models.persona import PersonaConfig, PersonaRecommender, PersonaState


@pytest.fixture(scope="module")
def fitted():
    """A small persona model on planted tastes (tags "taste-k"), its explainer with the vocabulary
    learned from every training user, and the states of 30 of them."""
    data = make_synthetic(n_users=300, n_items=120, n_personas=4, density=0.15, seed=1)
    positives = data.to_csr()
    model = PersonaRecommender(PersonaConfig(n_personas=2, n_bases=8, embedding_dim=8, progress=False)).fit(positives)
    explainer = Explainer.for_items(model.scorer, data.items, positives).with_vocabulary(
        model.fold_in(positives), data.items["title"].to_list())
    return model, explainer, model.fold_in(positives[:30]), data


def _one(state: PersonaState, user: int) -> PersonaState:
    return PersonaState(state.coefficients[user : user + 1], state.prior_logits[user : user + 1])


def _summary(explainer: Explainer, state: PersonaState, length: str = "sentence") -> str:
    return explainer.summaries(state, length)[0]


def _tagged_in_top(model, explainer, state: PersonaState, tag: str, k: int = 20) -> int:
    ids, _ = top_k(model.scorer.scores(state), k)
    return sum(tag in explainer.item_tags[item] for item in ids[0])


@pytest.mark.parametrize("length", LENGTHS)
def test_every_users_summary_reads_back_to_itself(fitted, length):
    model, explainer, states, _ = fitted
    for user, text in enumerate(explainer.summaries(states, length)):
        assert _summary(explainer, state_from_summary(text, explainer.vocabulary), length) == text, user


@settings(max_examples=40, deadline=None)
@given(data=st.data(), length=st.sampled_from(LENGTHS))
def test_round_trip_is_lossless_on_the_vocabulary(fitted, data, length):
    _, explainer, _, _ = fitted
    vocabulary = explainer.vocabulary
    labels = data.draw(st.lists(st.sampled_from(vocabulary.labels), min_size=1, max_size=3, unique=True))
    raw = data.draw(st.lists(st.integers(1, 100), min_size=len(labels), max_size=len(labels)))
    percents = whole_percents(np.array(raw, float))
    text = ", ".join(f"{label} ({percent}%)" for label, percent in zip(labels, percents) if percent > 0) + "."
    leans = data.draw(st.lists(st.sampled_from(vocabulary.leans), max_size=2, unique=True))
    if leans and percents[0] > 0:
        text += f" {labels[0]} leans toward {', '.join(leans)}."
    state = state_from_summary(text, vocabulary)
    summary = _summary(explainer, state, length)
    assert _summary(explainer, state_from_summary(summary, vocabulary), length) == summary


def test_a_vocabulary_sentence_renders_as_itself(fitted):
    _, explainer, _, _ = fitted
    first, second = explainer.vocabulary.labels[:2]
    text = f"Mostly {first} (70%), some {second} (30%)."
    assert _summary(explainer, state_from_summary(text, explainer.vocabulary)) == text


def test_stated_shares_become_persona_weights(fitted):
    _, explainer, _, _ = fitted
    first, second = explainer.vocabulary.labels[:2]
    state = state_from_summary(f"{first} (70%), {second} (30%).", explainer.vocabulary)
    np.testing.assert_allclose(np.exp(state.prior_logits[0]), [0.7, 0.3], rtol=1e-6)
    np.testing.assert_array_equal(state.coefficients[0], explainer.vocabulary.entries[[0, 1]])


def test_the_clause_is_the_main_label_and_the_sentence_opens_the_three(fitted):
    _, explainer, states, _ = fitted
    clause, sentence, three = (explainer.summaries(states, length) for length in LENGTHS)
    for user in range(len(states)):
        assert sentence[user].removeprefix("Mostly ").removeprefix("Partly ").startswith(clause[user] + " (")
        assert three[user].startswith(sentence[user])


def test_more_personas_than_stated_split_the_largest_and_keep_every_score(fitted):
    model, explainer, _, _ = fitted
    first, second = explainer.vocabulary.labels[:2]
    text = f"{first} (60%), {second} (40%)."
    own, padded = (state_from_summary(text, explainer.vocabulary, m) for m in (None, 4))
    assert padded.coefficients.shape[1] == 4
    np.testing.assert_allclose(model.scorer.scores(padded), model.scorer.scores(own), rtol=1e-5, atol=1e-6)


def test_utf8_bytes_read_like_text(fitted):
    _, explainer, _, _ = fitted
    text = f"{explainer.vocabulary.labels[0]} (100%)."
    np.testing.assert_array_equal(state_from_summary(text.encode(), explainer.vocabulary).coefficients,
                                  state_from_summary(text, explainer.vocabulary).coefficients)


# -- edits ---------------------------------------------------------------------------------------
def _mixed_text(explainer) -> str:
    """A two-persona text whose personas share no tag with taste-2."""
    labels = [label for label in explainer.vocabulary.labels if "taste-2" not in label]
    return f"Mostly {labels[0]} (60%), some {labels[1]} (40%)."


def test_more_x_puts_more_x_items_in_the_list(fitted):
    model, explainer, _, _ = fitted
    text = _mixed_text(explainer)
    before = _tagged_in_top(model, explainer, state_from_summary(text, explainer.vocabulary), "taste-2")
    after = _tagged_in_top(model, explainer, state_from_summary(text + " More taste-2.", explainer.vocabulary), "taste-2")
    assert after > before


def test_less_x_puts_fewer_x_items_in_the_list(fitted):
    model, explainer, _, _ = fitted
    label = explainer.vocabulary.entry_for("taste-1")
    text = f"Mostly {explainer.vocabulary.labels[label]} (100%)."
    before = _tagged_in_top(model, explainer, state_from_summary(text, explainer.vocabulary), "taste-1")
    after = _tagged_in_top(model, explainer, state_from_summary(text + " Less taste-1.", explainer.vocabulary), "taste-1")
    assert after < before


def test_no_x_removes_its_persona_and_more_x_items_than_less_x(fitted):
    model, explainer, _, _ = fitted
    vocabulary = explainer.vocabulary
    x_label = vocabulary.labels[vocabulary.entry_for("taste-1")]
    other = next(label for label in vocabulary.labels if "taste-1" not in label)
    text = f"Mostly {other} (50%), some {x_label} (50%)."
    removed = state_from_summary(text + " No taste-1.", vocabulary)
    assert removed.coefficients.shape[1] == 1
    less = _tagged_in_top(model, explainer, state_from_summary(text + " Less taste-1.", vocabulary), "taste-1")
    assert _tagged_in_top(model, explainer, removed, "taste-1") < less


def test_more_of_a_taste_no_persona_has_adds_its_persona(fitted):
    _, explainer, _, _ = fitted
    state = state_from_summary(_mixed_text(explainer) + " more taste-2", explainer.vocabulary)
    assert state.coefficients.shape[1] == 3
    assert np.exp(state.prior_logits[0, 2]) == pytest.approx(0.25)


def test_a_plural_edit_names_its_singular_tag(fitted):
    _, explainer, _, _ = fitted
    text = _mixed_text(explainer)
    singular, plural = (state_from_summary(f"{text} less {name}.", explainer.vocabulary).coefficients
                        for name in ("taste-2", "taste-2s"))
    np.testing.assert_array_equal(singular, plural)


# -- bad input -------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, message", [
    ("", "empty"),
    ("   ", "empty"),
    (b"Mostly \xff\xfe (100%).", "not valid UTF-8"),
    ("Mostly Opera & Ballet (100%).", "unknown persona label 'Opera & Ballet'"),
    ("Mostly taste-1 (60%), some taste-0 (30%).", "sum to 90%, not 100%"),
    ("Mostly taste-1 (60%), some taste-0.", "every persona of the mix states a share or none"),
    ("Mostly taste-1 (100%), some taste-0 (0%).", "above 0%"),
    ("Mostly taste-1 (100%). taste-0 (100%).", "one persona mix"),
    ("Less taste-1.", "names no persona"),
    ("Mostly taste-1 (100%). More taste-0, less taste-0.", "contradictory edits"),
    ("Mostly taste-1 (100%). No taste-1.", "removes every persona"),
    ("Mostly taste-1 (100%). More opera.", "unknown label or tag 'opera'"),
    ("Mostly taste-1 (100%). taste-0 leans toward taste-2.", "the mix names no such persona"),
    ("Mostly taste-1 (100%). taste-1 leans toward opera.", "unknown lean label 'opera'"),
    ('Mostly taste-1 (100%). Because you liked "No Such Film (1900)".', "unknown title"),
    ('Mostly taste-1 (100%). Because you liked "item 0 (taste-0)", "item 1 (taste-3)".', "one title per persona"),
    ('Mostly taste-1 (100%). Because you liked "item 0', "never closed"),
])
def test_bad_summary_text_is_refused_with_the_reason(fitted, text, message):
    _, explainer, _, _ = fitted
    with pytest.raises(SummaryError, match=message.replace("(", r"\(").replace(")", r"\)")):
        state_from_summary(text, explainer.vocabulary)


def test_an_unknown_label_suggests_close_ones(fitted):
    _, explainer, _, _ = fitted
    with pytest.raises(SummaryError, match="did you mean taste-1"):
        state_from_summary("Mostly taste-1x (100%).", explainer.vocabulary)


def test_shares_left_unstated_are_equal(fitted):
    _, explainer, _, _ = fitted
    first, second = explainer.vocabulary.labels[:2]
    state = state_from_summary(f"{first}, {second}", explainer.vocabulary)
    np.testing.assert_allclose(np.exp(state.prior_logits[0]), [0.5, 0.5], rtol=1e-6)


def test_a_label_named_twice_is_one_persona_with_the_summed_share(fitted):
    _, explainer, _, _ = fitted
    first, second = explainer.vocabulary.labels[:2]
    state = state_from_summary(f"{first} (30%), {second} (50%), {first} (20%).", explainer.vocabulary)
    np.testing.assert_allclose(np.exp(state.prior_logits[0]), [0.5, 0.5], rtol=1e-6)


def test_the_parser_reads_every_kind_of_sentence():
    content = parse('Mostly A & B (60%), a little C (40%). A & B leans toward D, E; away from F. '
                    'Because you liked "Dr. Strangelove (1964)", "Heat". Less G, no H and more I.')
    assert [(part.label, part.share) for part in content.parts] == [("A & B", 0.6), ("C", 0.4)]
    assert content.leans == {"A & B": [("D", 1.0), ("E", 1.0), ("F", -1.0)]}
    assert content.titles == ["Dr. Strangelove (1964)", "Heat"]
    assert content.edits == [("less", "G"), ("no", "H"), ("more", "I")]
