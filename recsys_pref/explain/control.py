"""User control: mute or boost one of a user's personas, or a shared base, by id or by label.

- A persona weight w_m scales persona m's attention before renormalisation: 0 mutes it (its
  attention is zero for every item, the other personas share the rest), 2 doubles its pull
  against the others.
- A base factor f_k scales every persona's coefficient on base k (c_umk -> f_k c_umk): 0
  removes that direction of taste from the user, 2 doubles it.
Both become `ControlWeights`, the numbers the scorer (models.persona.scorer) applies.

Targets are an int (the persona or base id) or a label: a string matching a persona's or a
base's label, or one of its tags, case-insensitively ("Horror" matches "Horror & Thriller").
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from recsys_pref.models.persona.scorer import ControlWeights

Target = int | str


@dataclass(frozen=True)
class Control:
    """personas: {persona id or label: weight}; bases: {base id or label: factor}; 0 mutes,
    values above 1 boost, 1 leaves alone. Empty by default (the model's own recommendations)."""

    personas: Mapping[Target, float] = field(default_factory=dict)
    bases: Mapping[Target, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for kind, values in (("persona weight", self.personas), ("base factor", self.bases)):
            for target, value in values.items():
                if not isinstance(target, (int, str)) or isinstance(target, bool):
                    raise TypeError(f"a {kind} target must be an id (int) or a label (str), got {target!r}")
                if not np.isfinite(value) or value < 0:
                    raise ValueError(f"{kind} for {target!r} must be finite and >= 0, got {value}")


def _matches(target: str, label: str) -> bool:
    wanted = target.strip().lower()
    return wanted == label.lower() or wanted in (part.strip().lower() for part in label.split("&"))


def resolve(target: Target, labels: Sequence[str], kind: str) -> list[int]:
    """Ids among `labels` (one per id) that `target` names; ValueError if none does."""
    if isinstance(target, int):
        if not 0 <= target < len(labels):
            raise ValueError(f"no {kind} {target}: ids run 0..{len(labels) - 1}")
        return [target]
    found = [index for index, name in enumerate(labels) if _matches(target, name)]
    if not found:
        raise ValueError(f"no {kind} is labelled {target!r}; labels: {', '.join(sorted(set(labels)))}")
    return found


def control_weights(control: Control, persona_labels: Sequence[Sequence[str]], base_labels: Sequence[str]) -> ControlWeights:
    """The scorer's weights for users whose personas carry `persona_labels` (n lists of M labels),
    the K bases being labelled `base_labels`. A persona label only applies to the users who have
    a persona with it (ValueError if none has); an id applies to everyone."""
    n, n_personas = len(persona_labels), len(persona_labels[0]) if persona_labels else 0
    weights = np.ones((n, n_personas))
    for target, weight in control.personas.items():
        matched = False
        for user, labels in enumerate(persona_labels):
            if isinstance(target, str) and not any(_matches(target, name) for name in labels):
                continue
            weights[user, resolve(target, labels, "persona")] = weight
            matched = True
        if not matched:
            raise ValueError(f"no user's persona is labelled {target!r}")
    factors = np.ones(len(base_labels))
    for target, factor in control.bases.items():
        factors[resolve(target, base_labels, "base")] = factor
    return ControlWeights(weights, factors)
