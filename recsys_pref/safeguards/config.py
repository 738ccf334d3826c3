"""SafeguardsConfig: which echo-chamber safeguards a slate is built with (all off by default).

Off (the default) leaves every slate identical to the plain model's top-k. Named presets are
the settings the safeguards bench compares: "off", "calibrated", "shrinkage", "exploration"
and "all". A YAML file (conf/safeguards.yaml) or a preset name configures `recommend`.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from recsys_pref.config import CONF_DIR
from recsys_pref.models.state_bounds import StateBounds

CATEGORY_SYSTEMS = ("personas", "bases", "genres")
CALIBRATED_ORDERS = ("greedy", "relevance")
PRESETS = ("off", "calibrated", "shrinkage", "exploration", "all")
#: The state bounds of the "shrinkage" and "all" presets (and of the bench's bounded variants).
BOUNDED_STATES = {"shrinkage": 0.2, "min_persona_entropy": 0.5, "min_base_entropy": 0.5}


@dataclass(frozen=True)
class SafeguardsConfig:
    """Safeguards applied when a slate is built (safeguards.slate).

    calibration_lambda: lambda in [0, 1] of Steck's calibrated re-ranking (safeguards.calibration);
        0 = off (the plain ranking), 1 = mix only.
    calibrate_over: category systems whose mixes the slate tracks, any of "personas", "bases",
        "genres" ("genres" is skipped when items have none).
    calibration_alpha: alpha of the smoothed KL (Steck: 0.01).
    calibrated_order: how the calibrated slate is ranked: "greedy" (the order Steck's greedy
        filled the slots in, his presentation) or "relevance" (the chosen items by the relevance
        the re-ranker used; the slate's mix, hence its KL, is a property of the set and stays).
    candidates: size of each user's pool (top by score) that re-ranking and exploration pick from.
    shrinkage, min_persona_entropy, min_base_entropy: bounds on the folded-in state
        (models.state_bounds.StateBounds), applied on top of any the model was trained with;
        0 = off.
    exploration_share: share of each slate's slots (rounded, the last ones) given to items of
        the bases the user has seen least (safeguards.exploration); 0 = off.
    exploration_base_share: share of the K bases, the least seen, that those items may come
        from (at least one base).
    exposure_penalty: weight in [0, 1] of a population-level term: each candidate's relevance
        (scaled to [0, 1]) loses this times its exposure relative to the most exposed item
        (safeguards.slate; needs the builder's item_exposure); 0 = off.
    """

    calibration_lambda: float = 0.0
    calibrate_over: tuple[str, ...] = ("personas", "genres")
    calibration_alpha: float = 0.01
    calibrated_order: str = "greedy"
    candidates: int = 100
    shrinkage: float = 0.0
    min_persona_entropy: float = 0.0
    min_base_entropy: float = 0.0
    exploration_share: float = 0.0
    exploration_base_share: float = 0.125
    exposure_penalty: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "calibrate_over", tuple(self.calibrate_over))
        problems = []
        unknown = sorted(set(self.calibrate_over) - set(CATEGORY_SYSTEMS))
        if unknown:
            problems.append(f"calibrate_over has unknown system(s) {unknown}; valid: {', '.join(CATEGORY_SYSTEMS)}")
        for name in ("calibration_lambda", "exploration_share", "exploration_base_share", "exposure_penalty"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                problems.append(f"{name} must lie in [0, 1], got {getattr(self, name)}")
        if self.calibrated_order not in CALIBRATED_ORDERS:
            problems.append(f"calibrated_order must be one of {', '.join(CALIBRATED_ORDERS)}, "
                            f"got {self.calibrated_order!r}")
        if not 0.0 < self.calibration_alpha <= 1.0:
            problems.append(f"calibration_alpha must lie in (0, 1], got {self.calibration_alpha}")
        if self.candidates < 1:
            problems.append(f"candidates must be >= 1, got {self.candidates}")
        if self.calibration_lambda > 0 and not self.calibrate_over:
            problems.append("calibration_lambda > 0 cannot be combined with an empty calibrate_over")
        if self.exploration_share == 1.0 and (self.calibration_lambda > 0 or self.exposure_penalty > 0):
            problems.append("exploration_share 1 gives every slot to exploration; it cannot be combined with "
                            "calibration_lambda or exposure_penalty, which re-rank the other slots")
        if problems:
            raise ValueError("SafeguardsConfig: " + "; ".join(problems))
        self.state_bounds  # noqa: B018  (validates the bounds)

    @property
    def state_bounds(self) -> StateBounds:
        """The bounds on users' states these settings ask for (models.state_bounds)."""
        return StateBounds(self.shrinkage, self.min_persona_entropy, self.min_base_entropy)

    @property
    def active(self) -> bool:
        """Whether any safeguard changes a slate."""
        return self.calibration_lambda > 0 or self.exploration_share > 0 or self.exposure_penalty > 0 or \
            self.state_bounds.active

    @classmethod
    def preset(cls, name: str) -> "SafeguardsConfig":
        """A named setting of the safeguards bench (see PRESETS). "all" is the setting with the
        lowest calibration KL within a 3% NDCG@10 cost in the safeguards sweep on a validation
        dataset (synthetic, data seed 1; BENCHMARKS.md, "Safeguards"): calibration lambda 0.4
        over personas and genres with bounded states; an exploration slot (1 of 10) added 3-4
        points of NDCG cost there, so "all" leaves exploration out and "exploration" shows it alone.
        Issue 17 (refits every 2 rounds, validation simulations) measured this preset's bounded
        states at 9.7% NDCG cost on synthetic and doubling Chaney's homogenization on
        ml-latest-small; the settings it tuned per dataset are conf/safeguards-synthetic.yaml and
        conf/safeguards-ml-latest-small.yaml (BENCHMARKS.md, "Issue 17")."""
        calibrated = {"calibration_lambda": 0.4}
        shrinkage = dict(BOUNDED_STATES)
        exploration = {"exploration_share": 0.1}
        settings = {"off": {}, "calibrated": calibrated, "shrinkage": shrinkage, "exploration": exploration,
                    "all": calibrated | shrinkage}
        if name not in settings:
            raise ValueError(f"unknown safeguards preset {name!r}; valid: {', '.join(PRESETS)}")
        return cls(**settings[name])

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "SafeguardsConfig":
        """From a mapping of field names (unknown names are an error)."""
        valid = {field.name for field in fields(cls)}
        unknown = sorted(set(values) - valid)
        if unknown:
            raise ValueError(f"unknown safeguards setting(s) {', '.join(unknown)}; valid: {', '.join(sorted(valid))}")
        return cls(**values)


def load_safeguards(source: str | Path) -> SafeguardsConfig:
    """A preset name ("off", "all", ...), a YAML file, or a name under conf/ ("safeguards")."""
    if str(source) in PRESETS:
        return SafeguardsConfig.preset(str(source))
    path = Path(source)
    if not path.is_file():
        path = CONF_DIR / f"{source}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"no safeguards preset or YAML file {source!r}; presets: {', '.join(PRESETS)}")
    document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(document, dict):
        raise ValueError(f"{path} must hold a mapping of safeguard settings")
    return SafeguardsConfig.from_dict(document.get("safeguards", document))
