"""Summary text back into a persona state: the summary as a carrier of a person.

Grammar (case-insensitive keywords; sentences end with "." outside double quotes):

    text      := sentence+
    sentence  := mix | lean | titles | edits
    mix       := part ("," part)*                        at most one mix per text
    part      := [lead] LABEL [" (" SHARE "%)"]           lead: Mostly | Partly | some | a little
    lean      := LABEL " leans" [" toward " names] [[";"] " away from " names]
    titles    := "Because you liked " QUOTED ("," QUOTED)*   one title per part, in order
    edits     := edit (("," | ";" | " and ") edit)*
    edit      := ("more" | "less" | "no") NAME
    names     := NAME ("," NAME)*

What each piece means (SummaryVocabulary holds the numbers):
- each part is a persona: LABEL must be a persona label of the vocabulary, and the persona
  is that label's entry. The lead word is informational (the renderer derives it from the
  share). SHARE is the persona's weight in percent: either every part states one and they sum
  to exactly 100, or none does and the parts share equally. A label named twice is one
  persona with the summed share.
- a lean sentence moves the persona LABEL of the mix by `lean_step` along each lean label's
  direction ("toward": +, "away from": -).
- titles: persona i (in the order of the mix) moves toward title i's item, by TITLE_PULL
  times the persona's norm along the item's unit reward vector (items like it score higher).
- edits act on the personas after everything else, each NAME being a persona label or a tag
  (a trailing "s" is dropped when only the singular is known: "Musicals" -> "Musical"):
  "more X" doubles the share of the personas X names (or adds X's entry at NEW_SHARE when
  none does) and moves every persona EDIT_GAP reward spreads toward tag X; "less X" halves
  their share and moves every persona EDIT_GAP spreads away from X; "no X" removes the
  personas X names and moves the others NO_GAP spreads away from X.

Bad input: an empty text, bytes that are not UTF-8, an unknown label, lean or title, shares
that do not sum to 100, a share of 0, shares on some parts only, two mixes, a lean on a
persona the mix does not name, more titles than personas, contradictory edits (one name
edited twice), edits without a mix, and "no" removing every persona raise SummaryError
(a ValueError) naming the problem.

The renderer (explain.summary.render_summaries) writes the same grammar, so
summary(state_from_summary(summary(s))) == summary(s) whenever summary(s) uses the
vocabulary's own labels.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field

import numpy as np

from recsys_pref.explain.vocabulary import SummaryVocabulary
from recsys_pref.models.persona.state import PersonaState

TITLE_PULL = 1.0
NEW_SHARE = 0.25
EDIT_GAP = 1.0
NO_GAP = 3.0
LEADS = ("mostly", "partly", "some", "a little")
VERBS = ("more", "less", "no")
_PART = re.compile(r"^(?:(mostly|partly|some|a little)\s+)?(.+?)(?:\s*\(\s*(\d+(?:\.\d+)?)\s*%\s*\))?$", re.IGNORECASE)
_LEAN = re.compile(r"^(.+?)\s+leans(?:\s+toward\s+(.+?))?(?:\s*;?\s*away from\s+(.+))?$", re.IGNORECASE)
_TITLES = re.compile(r"^because you liked\s+(.+)$", re.IGNORECASE)
_EDIT = re.compile(r"^(more|less|no)\s+(.+)$", re.IGNORECASE)


class SummaryError(ValueError):
    """Summary text that cannot be read as a state (the message says why)."""


@dataclass(frozen=True)
class Part:
    """One persona of the mix: its label and share (a fraction; None when the text states none)."""

    label: str
    share: float | None


@dataclass(frozen=True)
class SummaryContent:
    """What a text says: the mix, leans {persona label: [(lean label, +1 or -1)]}, titles (one
    per part, in order) and edits [(verb, name)], in text order."""

    parts: list[Part] = field(default_factory=list)
    leans: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    titles: list[str] = field(default_factory=list)
    edits: list[tuple[str, str]] = field(default_factory=list)


def decode(text: str | bytes) -> str:
    """`text` as a str; SummaryError for bytes that are not UTF-8 or an empty text."""
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as error:
            raise SummaryError(f"the summary is not valid UTF-8 (byte {error.start}: {error.reason})") from None
    if not isinstance(text, str):
        raise SummaryError(f"a summary is text (str or UTF-8 bytes), got {type(text).__name__}")
    if not text.strip():
        raise SummaryError("the summary is empty")
    return text


def sentences(text: str) -> list[str]:
    """The sentences of `text`: split at "." followed by a space or the end, outside quotes."""
    found, current, quoted = [], [], False
    for position, char in enumerate(text):
        if char == '"':
            quoted = not quoted
        if char == "." and not quoted and (position + 1 == len(text) or text[position + 1].isspace()):
            found.append("".join(current))
            current = []
        else:
            current.append(char)
    found.append("".join(current))
    if quoted:
        raise SummaryError("a double quote is never closed")
    return [sentence.strip() for sentence in found if sentence.strip()]


def _split(names: str, separators: str = r",|;|\s+and\s+") -> list[str]:
    return [name.strip() for name in re.split(separators, names) if name.strip()]


def parse(text: str | bytes) -> SummaryContent:
    """The content of a summary text (grammar in the module docstring), labels not yet checked."""
    content = SummaryContent()
    for sentence in sentences(decode(text)):
        if titles := _TITLES.match(sentence):
            content.titles.extend(re.findall(r'"([^"]*)"', titles.group(1)))
            if not content.titles:
                raise SummaryError(f'"Because you liked" needs quoted titles: {sentence!r}')
        elif _EDIT.match(_split(sentence)[0]):
            for edit in _split(sentence):
                verb = _EDIT.match(edit)
                if verb is None:
                    raise SummaryError(f"{edit!r} is not an edit (more X, less X or no X)")
                content.edits.append((verb.group(1).lower(), verb.group(2).strip()))
        elif lean := _LEAN.match(sentence):
            toward, away = lean.group(2) or "", lean.group(3) or ""
            content.leans.setdefault(lean.group(1).strip(), []).extend(
                [(name, 1.0) for name in _split(toward, ",")] + [(name, -1.0) for name in _split(away, ",")])
        else:
            if content.parts:
                raise SummaryError(f"a summary has one persona mix; a second one starts {sentence!r}")
            for part in _split(sentence, ","):
                match = _PART.match(part)
                assert match is not None  # the pattern accepts any non-empty part
                share = None if match.group(3) is None else float(match.group(3)) / 100
                content.parts.append(Part(match.group(2).strip(), share))
    return content


def _unknown(kind: str, name: str, known: tuple[str, ...]) -> SummaryError:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; {len(known)} are known"
    return SummaryError(f"unknown {kind} {name!r}{hint}")


def _shares(parts: list[Part]) -> np.ndarray:
    stated = [part.share for part in parts]
    if all(share is None for share in stated):
        return np.full(len(parts), 1 / len(parts))
    if any(share is None for share in stated):
        raise SummaryError("either every persona of the mix states a share or none does")
    shares = np.array(stated, dtype=float)
    if (shares <= 0).any():
        raise SummaryError("a persona's share must be above 0%; leave the persona out instead")
    if abs(shares.sum() - 1) > 1e-9:
        raise SummaryError(f"the shares sum to {shares.sum():.0%}, not 100%")
    return shares


@dataclass
class _Personas:
    """The personas being built: labels, shares (P,) and coefficients (P, K)."""

    labels: list[str]
    shares: np.ndarray
    coefficients: np.ndarray

    def matching(self, name: str) -> list[int]:
        wanted = name.strip().lower()
        return [index for index, label in enumerate(self.labels)
                if wanted == label.lower() or wanted in (part.strip().lower() for part in label.split("&"))]


def _mix(content: SummaryContent, vocabulary: SummaryVocabulary) -> _Personas:
    if not content.parts:
        raise SummaryError("the summary names no persona (a mix such as 'Mostly Drama (70%), some Comedy (30%).')")
    shares = _shares(content.parts)
    merged: dict[int, float] = {}
    for part, share in zip(content.parts, shares):
        index = vocabulary.label_index(part.label)
        if index is None:
            raise _unknown("persona label", part.label, vocabulary.labels)
        merged[index] = merged.get(index, 0.0) + share
    indices = list(merged)
    return _Personas([vocabulary.labels[index] for index in indices], np.array([merged[i] for i in indices]),
                     vocabulary.entries[indices].astype(np.float64))


def _apply_leans(personas: _Personas, content: SummaryContent, vocabulary: SummaryVocabulary) -> None:
    for name, leans in content.leans.items():
        targets = [index for index, label in enumerate(personas.labels) if label.lower() == name.lower()]
        if not targets:
            raise SummaryError(f"{name!r} leans, but the mix names no such persona ({', '.join(personas.labels)})")
        for lean, sign in leans:
            index = vocabulary.lean_index(lean)
            if index is None:
                raise _unknown("lean label", lean, vocabulary.leans)
            personas.coefficients[targets] += sign * vocabulary.lean_step * vocabulary.lean_directions[index]


def _apply_titles(personas: _Personas, content: SummaryContent, vocabulary: SummaryVocabulary) -> None:
    if len(content.titles) > len(content.parts):
        raise SummaryError(f"{len(content.titles)} titles for {len(content.parts)} personas: one title per persona")
    for part, title in zip(content.parts, content.titles):
        item = vocabulary.title_index(title)
        if item is None:
            raise _unknown("title", title, vocabulary.titles)
        persona = personas.labels.index(vocabulary.labels[vocabulary.label_index(part.label)])
        reward = vocabulary.item_rewards[item].astype(np.float64)
        norm = np.linalg.norm(personas.coefficients[persona])
        personas.coefficients[persona] += TITLE_PULL * norm * reward / max(np.linalg.norm(reward), 1e-12)


def _resolve_edit(name: str, personas: _Personas, vocabulary: SummaryVocabulary) -> tuple[str, list[int], np.ndarray | None]:
    """The name as known (singular if only that is), the personas it names and its tag direction."""
    candidates = [name] + ([name[:-1]] if name.lower().endswith("s") else [])
    for candidate in candidates:
        found, direction = personas.matching(candidate), vocabulary.tag_direction(candidate)
        entry = vocabulary.entry_for(candidate)
        if found or direction is not None or entry is not None:
            return candidate, found, direction
    raise _unknown("label or tag", name, vocabulary.labels + vocabulary.tags)


def _apply_edits(personas: _Personas, content: SummaryContent, vocabulary: SummaryVocabulary) -> _Personas:
    edited: dict[str, str] = {}
    for verb, name in content.edits:
        known, found, direction = _resolve_edit(name, personas, vocabulary)
        key = known.lower()
        if key in edited:
            raise SummaryError(f"contradictory edits: {edited[key]!r} and {verb + ' ' + name!r} edit the same taste")
        edited[key] = f"{verb} {name}"
        if verb == "more" and not found:
            entry = vocabulary.entry_for(known)
            if entry is not None:
                personas = _Personas(personas.labels + [vocabulary.labels[entry]],
                                     np.append(personas.shares * (1 - NEW_SHARE), NEW_SHARE),
                                     np.vstack([personas.coefficients, vocabulary.entries[entry]]))
        elif verb == "more":
            personas.shares[found] *= 2
        elif verb == "less":
            personas.shares[found] /= 2
        else:
            keep = [index for index in range(len(personas.labels)) if index not in found]
            if not keep:
                raise SummaryError(f"{verb + ' ' + name!r} removes every persona of the summary")
            personas = _Personas([personas.labels[i] for i in keep], personas.shares[keep], personas.coefficients[keep])
        if direction is not None:
            gap = {"more": EDIT_GAP, "less": -EDIT_GAP, "no": -NO_GAP}[verb]
            spread = vocabulary.reward_spread(personas.coefficients)  # (P,)
            personas.coefficients += gap * spread[:, None] * direction
        personas.shares = personas.shares / personas.shares.sum()
    return personas


def state_from_summary(text: str | bytes, vocabulary: SummaryVocabulary, n_personas: int | None = None) -> PersonaState:
    """The one-user state (1, M, K) a summary text describes (grammar and meaning in the
    module docstring). M is the number of personas the text leaves, or `n_personas` when
    given: extra personas are copies of the largest one sharing its weight, which leaves
    every score unchanged. SummaryError (a ValueError) on bad input."""
    content = parse(text)
    personas = _mix(content, vocabulary)
    _apply_leans(personas, content, vocabulary)
    _apply_titles(personas, content, vocabulary)
    personas = _apply_edits(personas, content, vocabulary)
    return padded_state(personas.coefficients, personas.shares, n_personas)


def padded_state(coefficients: np.ndarray, shares: np.ndarray, n_personas: int | None = None) -> PersonaState:
    """A one-user state from personas (P, K) and shares (P,) > 0, padded to `n_personas` by
    splitting the largest persona into equal copies (scores unchanged)."""
    coefficients, shares = np.array(coefficients, dtype=np.float64), np.array(shares, dtype=np.float64)
    n_personas = len(shares) if n_personas is None else n_personas
    if n_personas < len(shares):
        raise SummaryError(f"the summary describes {len(shares)} personas; the model holds {n_personas}")
    while len(shares) < n_personas:
        largest = int(np.argmax(shares))
        shares[largest] /= 2
        shares = np.append(shares, shares[largest])
        coefficients = np.vstack([coefficients, coefficients[largest]])
    return PersonaState(coefficients[None], np.log(shares)[None])
