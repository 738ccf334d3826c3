"""A user's preferences in one or two sentences, built from persona labels and weights.

A persona's weight is its mean attention over the user's `TOP_N` best-scored items: how much
of what the model would put in front of this user that persona decides. Personas that share a
label are merged. Example: "Mostly Sci-Fi & Thriller (54%), some Romance & Comedy (46%).
Strongest tastes: Horror, Film-Noir; away from Children."
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from recsys_pref.explain.labels import NO_LABEL, PersonaDescription
from recsys_pref.models.persona.scorer import ScoreTerms

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
