"""A user's preferences in words, built from persona labels and weights.

Two renderings. `render_summaries` writes the summary that is also a carrier: every label is a
word of the model's SummaryVocabulary, every share is the persona's own weight (the softmax of
its prior logit, rounded to whole percents that sum to 100), and explain.summary_parser reads
it back into a state, so what a user reads is what the system can use. It comes at three
lengths: "clause" (the main persona's label), "sentence" (every persona with its share) and
"three" (the sentence and up to two sentences of leans, the strongest directions in which the
user's personas differ from their label's entry). `summarize` is the older descriptive
sentence, used when no vocabulary is at hand.

In `summarize`, a persona's weight is its mean attention over the user's `TOP_N` best-scored items: how much
of what the model would put in front of this user that persona decides. Personas that share a
label are merged. Example: "Mostly Sci-Fi & Thriller (54%), some Romance & Comedy (46%).
Strongest tastes: Horror, Film-Noir; away from Children."
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Sequence

import numpy as np

from recsys_pref.explain.labels import NO_LABEL, PersonaDescription
from recsys_pref.explain.summary_parser import SummaryError, state_from_summary
from recsys_pref.explain.vocabulary import SummaryVocabulary
from recsys_pref.models.persona.scorer import ScoreTerms
from recsys_pref.models.persona.state import PersonaState

if TYPE_CHECKING:
    from recsys_pref.explain.explainer import Explainer

TOP_N = 100
MOSTLY = 0.5  # a weight at least this opens with "Mostly"
SOME = 0.2  # weights at least this are "some", below it "a little"


def persona_mix(terms: ScoreTerms, top_n: int = TOP_N) -> np.ndarray:
    """(n, M) weight of each persona: mean attention over each user's top_n items by score.
    `terms` covers the whole catalog (PersonaScorer.terms with items=None)."""
    top_n = min(top_n, terms.scores.shape[1])
    top = np.argpartition(-terms.scores, top_n - 1, axis=1)[:, :top_n]  # (n, top_n)
    return np.take_along_axis(terms.attention, top[:, None, :], axis=2).mean(axis=2)


def _phrase(position: int, name: str, weight: float) -> str:
    if position == 0:
        lead = "Mostly" if weight >= MOSTLY else "Partly"
    else:
        lead = "some" if weight >= SOME else "a little"
    return f"{lead} {name} ({weight:.0%})"


def summarize(personas: Sequence[PersonaDescription], weights: np.ndarray) -> str:
    """One user's summary from their persona descriptions and (M,) weights (summing to 1)."""
    weights = np.asarray(weights, dtype=float)
    if len(personas) != len(weights) or not len(weights):
        raise ValueError(f"{len(personas)} personas and {len(weights)} weights must match and be non-empty")
    merged: dict[str, float] = {}
    for persona, weight in zip(personas, weights):
        merged[persona.label] = merged.get(persona.label, 0.0) + float(weight)
    ranked = sorted(merged.items(), key=lambda pair: -pair[1])
    sentence = ", ".join(_phrase(position, name, weight) for position, (name, weight) in enumerate(ranked)) + "."
    main = personas[int(np.argmax(weights))]
    toward = [name for _, strength, name in main.bases if strength >= 0 and name != NO_LABEL]
    away = [name for _, strength, name in main.bases if strength < 0 and name != NO_LABEL]
    if not toward and not away:
        return sentence
    parts = [f"Strongest tastes: {', '.join(dict.fromkeys(toward))}"] if toward else []
    parts += [f"away from {', '.join(dict.fromkeys(away))}"] if away else []
    detail = "; ".join(parts)
    return f"{sentence} {detail[0].upper()}{detail[1:]}."


# -- the summary as a carrier -------------------------------------------------------------------
SummaryLength = Literal["clause", "sentence", "three"]
LENGTHS: tuple[SummaryLength, ...] = ("clause", "sentence", "three")
LEANS_PER_PERSONA = 2  # lean labels per lean sentence, at most
LEAN_SENTENCES = 2  # lean sentences in a "three" summary, at most


@dataclass(frozen=True)
class MixGroup:
    """The personas of one user that share a vocabulary label: their summed share in whole
    percent, `persona` the largest of them, and `residual` (K,): their share-weighted mean
    coefficients minus the label's entry (what leans describe)."""

    label: str
    percent: int
    persona: int
    residual: np.ndarray


def whole_percents(shares: np.ndarray) -> np.ndarray:
    """(P,) shares as whole percents summing to exactly 100 (largest remainder, ties to the first)."""
    raw = 100 * np.asarray(shares, dtype=np.float64) / np.sum(shares)
    floor = np.floor(raw + 1e-9)
    order = np.argsort(-(raw - floor), kind="stable")
    floor[order[: int(round(100 - floor.sum()))]] += 1
    return floor.astype(int)


def mix_groups(personas: Sequence[PersonaDescription], coefficients: np.ndarray, logits: np.ndarray,
               vocabulary: SummaryVocabulary) -> list[MixGroup]:
    """One user's personas (M,) with coefficients (M, K) and prior logits (M,) as vocabulary
    groups, largest share first, groups under 0.5% left out. A persona's label is its own
    (describe_personas) when the vocabulary has it, else the entry nearest in cosine."""
    shares = np.exp(logits - logits.max())
    shares = shares / shares.sum()
    norms = np.linalg.norm(vocabulary.entries, axis=1) * np.maximum(np.linalg.norm(coefficients, axis=1), 1e-12)[:, None]
    nearest = np.argmax(coefficients @ vocabulary.entries.T / np.maximum(norms, 1e-12), axis=1)  # (M,)
    index = [vocabulary.label_index(persona.label) for persona in personas]
    entry = [found if found is not None else int(near) for found, near in zip(index, nearest)]
    groups: dict[int, list[int]] = {}
    for persona, label in enumerate(entry):
        groups.setdefault(label, []).append(persona)
    labels = list(groups)
    percents = whole_percents(np.array([shares[groups[label]].sum() for label in labels]))
    found = []
    for label, percent in zip(labels, percents):
        members = groups[label]
        weights = shares[members] / shares[members].sum()
        residual = weights @ coefficients[members] - vocabulary.entries[label]
        found.append(MixGroup(vocabulary.labels[label], int(percent), members[int(np.argmax(shares[members]))], residual))
    return sorted((group for group in found if group.percent > 0), key=lambda group: (-group.percent, group.label))


def _lead(position: int, percent: int) -> str:
    if position == 0:
        return "Mostly" if percent >= 100 * MOSTLY else "Partly"
    return "some" if percent >= 100 * SOME else "a little"


def _lean_sentence(group: MixGroup, vocabulary: SummaryVocabulary, n_leans: int) -> str | None:
    """"X leans toward A, B; away from C." from the group's strongest lean projections (at
    least half a lean step), None when it has none."""
    if n_leans == 0 or not len(vocabulary.leans) or vocabulary.lean_step <= 0:
        return None
    projections = vocabulary.lean_directions @ group.residual  # (L,)
    strongest = [int(i) for i in np.argsort(-np.abs(projections), kind="stable")[:n_leans]
                 if abs(projections[i]) >= vocabulary.lean_step / 2]
    toward = [vocabulary.leans[i] for i in strongest if projections[i] > 0]
    away = [vocabulary.leans[i] for i in strongest if projections[i] < 0]
    if not strongest:
        return None
    parts = ([f"toward {', '.join(toward)}"] if toward else []) + ([f"away from {', '.join(away)}"] if away else [])
    return f"{group.label} leans {'; '.join(parts)}."


def render(groups: list[MixGroup], length: SummaryLength, vocabulary: SummaryVocabulary,
           n_leans: int = LEANS_PER_PERSONA, titles: Sequence[str] = ()) -> str:
    """The text of one user's groups at `length`; `titles` (one per group, in order) adds a
    "Because you liked" sentence (titles holding a double quote, and those after, are left out)."""
    if length not in LENGTHS:
        raise ValueError(f"unknown summary length {length!r}; expected one of {', '.join(LENGTHS)}")
    if length == "clause":
        text = groups[0].label
    else:
        text = ", ".join(f"{_lead(position, group.percent)} {group.label} ({group.percent}%)"
                         for position, group in enumerate(groups)) + "."
        if length == "three":
            leans = [_lean_sentence(group, vocabulary, n_leans) for group in groups]
            text = " ".join([text] + [sentence for sentence in leans if sentence][:LEAN_SENTENCES])
    quoted = []
    for title in titles:
        if '"' in title or not title.strip():
            break
        quoted.append(f'"{title.strip()}"')
    return text + (f" Because you liked {', '.join(quoted)}." if quoted else "")


def render_summaries(explainer: Explainer, vocabulary: SummaryVocabulary, state: PersonaState,
                     length: SummaryLength = "sentence", liked: np.ndarray | None = None) -> list[str]:
    """Each user's summary at `length` (module docstring). At "three", a user whose text would
    not read back to itself gets fewer leans (down to none), so every text returned round-trips.
    liked: (n, M) item indices, the history item behind each persona ("because you liked"),
    -1 for none."""
    groups = _groups(explainer, vocabulary, state)
    leans = [LEANS_PER_PERSONA] * len(groups)
    texts = [render(user_groups, length, vocabulary) for user_groups in groups]
    for n_leans in range(LEANS_PER_PERSONA - 1, -1, -1) if length == "three" else ():
        for user in _not_round_tripping(explainer, vocabulary, texts):
            leans[user], texts[user] = n_leans, render(groups[user], length, vocabulary, n_leans)
    if liked is None:
        return texts
    titles = [["" if liked[user, group.persona] < 0 else vocabulary.titles[liked[user, group.persona]]
               for group in user_groups] for user, user_groups in enumerate(groups)]
    return [render(user_groups, length, vocabulary, n_leans, user_titles)
            for user_groups, n_leans, user_titles in zip(groups, leans, titles)]


def _groups(explainer: Explainer, vocabulary: SummaryVocabulary, state: PersonaState) -> list[list[MixGroup]]:
    return [mix_groups(personas, state.coefficients[user], state.prior_logits[user], vocabulary)
            for user, personas in enumerate(explainer.describe(state))]


def _not_round_tripping(explainer: Explainer, vocabulary: SummaryVocabulary, texts: list[str]) -> list[int]:
    """Users whose "three" text (without titles) does not read back to itself."""
    parsed: dict[int, PersonaState] = {}
    for user, text in enumerate(texts):
        try:
            parsed[user] = state_from_summary(text, vocabulary)
        except SummaryError:
            pass
    width = max((len(state.prior_logits[0]) for state in parsed.values()), default=1)
    users = list(parsed)
    padded = [state_from_summary(texts[user], vocabulary, width) for user in users]
    stacked = PersonaState(np.concatenate([state.coefficients for state in padded]).reshape(-1, width, vocabulary.n_bases),
                           np.concatenate([state.prior_logits for state in padded]).reshape(-1, width))
    again = [render(user_groups, "three", vocabulary) for user_groups in _groups(explainer, vocabulary, stacked)] \
        if users else []
    same = {user for user, text in zip(users, again) if text == texts[user]}
    return [user for user in range(len(texts)) if user not in same]
