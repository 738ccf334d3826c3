"""PersonaConfig: the persona model's hyperparameters and its three presets."""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Literal

from recsys_pref.models.state_bounds import StateBounds

Loss = Literal["multinomial", "sampled_softmax", "bpr"]
LOSSES: tuple[str, ...] = ("multinomial", "sampled_softmax", "bpr")
PRESETS: tuple[str, ...] = ("persona", "pref-linear", "amp-cf")


@dataclass(frozen=True)
class PersonaConfig:
    """Hyperparameters of the persona model (defaults chosen on ml-latest-small validation users).

    Model
    n_personas: M, personas per user (1 = PReF-linear). 2: three and four personas scored
        no better on validation (table below), and fewer numbers per user make onboarding
        cheaper.
    n_bases: K, shared base reward functions (DESIGN's budget: at most 64). 64 beat 32.
    embedding_dim: d, item embedding size; with identity bases K must equal d.
    temperature: tau, divides persona rewards inside the attention softmax (score units):
        small tau makes attention pick the persona that likes the item most (a max), large
        tau makes it follow the prior pi_u (a fixed mixture).
    identity_bases: fix P = I (K = d, not trained): AMP-CF, personas live in item space.

    warm_start: initialise item embeddings, bases and the encoder's default personas from
        implicit's ALS fitted on the same data (see models.warm_start); off by default.

    Encoder (the user state; see the module docstring)
    hidden_dim: width of the tanh hidden layer (Mult-DAE uses 600).
    input_dropout: share of history entries dropped while training (denoising; 0.5 as Mult-DAE).

    Optimisation
    learning_rate: AdamW step size.
    weight_decay: AdamW decoupled weight decay on every weight.
    batch_size: users per step.
    max_epochs: upper bound on passes over the training users.
    max_seconds: wall-clock budget of training in seconds (None: no limit); training stops
        after the step that crosses it (the throughput benchmark trains to a time box).
    patience: epochs without a better validation NDCG@100 before stopping.
    loss: "multinomial" (softmax over the whole catalog, the default), "sampled_softmax"
        (each positive against `n_negatives` uniformly drawn items shared by the batch) or
        "bpr" (Bradley-Terry on (positive, uniform negative) pairs); the last two never
        score the whole catalog during training, for large catalogs.
    n_negatives: sampled items per batch for "sampled_softmax".
    base_distinctness: weight of the squared off-diagonal of the normalised Gram of the bases
        (pushes bases toward distinct directions so each can carry its own label).
    prior_strength: weight of the mean squared distance of user states from the batch mean
        (shrinks users toward the population, a safeguard against extreme states).

    State bounds (safeguards against echo chambers; models.state_bounds; all 0 = off, which
    leaves every result bit-identical). Applied where the encoder produces the state, so
    training, fold-in and scoring all see the bounded state:
    state_shrinkage: s in [0, 1], each state becomes (1 - s) state + s prior, the prior being
        the encoder's state for an empty history (the population prior before any evidence).
    min_persona_entropy: floor in [0, 1] on the entropy of softmax(pi_u), as a share of log M.
    min_base_entropy: floor in [0, 1] on the entropy of each persona's base weights
        c_mk^2 / |c_m|^2, as a share of log K.

    Procedure
    validation_share: share of training users held out inside fit for early stopping (0
        trains max_epochs on every user without validation).
    seed: seeds initialisation, dropout, batching and the internal validation split.
    accelerator: Lightning accelerator ("cpu" by default; "auto" uses a GPU when present).
    progress: show Lightning's progress bar. Not a modelling choice.

    Validation NDCG@100 / Recall@20 on ml-latest-small, strong generalization, mean over the
    validation users of split seeds 0, 1, 2 (60 users each; seed-to-seed spread about 0.03,
    so differences under 0.01 are noise). Fitted on `val_train`; changes from the defaults:

        M=2 K=64 (default)                0.338 / 0.299    EASE l2=200 (for reference)  0.366 / 0.328
        M=2 K=32                          0.334 / 0.292    EASE l2=100                  0.364 / 0.322
        M=2 K=64 d=128                    0.331 / 0.301    ALS 64 factors, alpha 5      0.348 / 0.297
        M=3 K=32                          0.324 / 0.282
        M=4 K=64                          0.325 / 0.296
        M=1 K=64 (pref-linear)            0.326 / 0.293
        amp-cf d=64 / d=32                0.328 / 0.299, 0.323 / 0.292
        K=32, tau 0.3 / 3.0               0.318 / 0.282, 0.332 / 0.298
        K=32, lr 3e-3                     0.316 / 0.288
        K=32, weight_decay 0.05           0.334 / 0.295
        K=64, dropout 0.7                 0.327 / 0.297
        K=64, hidden 200                  0.332 / 0.289
        K=64, weight_decay 1.0            0.329 / 0.290
        K=64, batch 32                    0.330 / 0.297
        K=64, lr 5e-4, 300 epochs         0.326 / 0.296
        K=64, no validation, 80 epochs    0.330 / 0.295
        free per-user states (no encoder, fold-in by 150 Adam steps): 0.228
        encoder state refined by 10 / 30 / 100 Adam steps on the history: 0.334 / 0.309 / 0.245
    """

    n_personas: int = 2
    n_bases: int = 64
    embedding_dim: int = 64
    temperature: float = 1.0
    identity_bases: bool = False
    warm_start: bool = False
    hidden_dim: int = 600
    input_dropout: float = 0.5
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 128
    max_epochs: int = 200
    max_seconds: float | None = None
    patience: int = 20
    loss: Loss = "multinomial"
    n_negatives: int = 256
    base_distinctness: float = 0.0
    prior_strength: float = 0.0
    state_shrinkage: float = 0.0
    min_persona_entropy: float = 0.0
    min_base_entropy: float = 0.0
    validation_share: float = 0.1
    seed: int = 0
    accelerator: str = "cpu"
    progress: bool = True

    def __post_init__(self) -> None:
        problems = []
        for name in ("n_personas", "n_bases", "embedding_dim", "hidden_dim", "batch_size", "max_epochs",
                     "patience", "n_negatives"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.temperature > 0:
            problems.append(f"temperature must be > 0, got {self.temperature}")
        if self.identity_bases and self.n_bases != self.embedding_dim:
            problems.append(
                f"identity_bases needs n_bases == embedding_dim (K = d), got {self.n_bases} and {self.embedding_dim}"
            )
        if not 0 <= self.input_dropout < 1:
            problems.append(f"input_dropout must be in [0, 1), got {self.input_dropout}")
        if not 0 <= self.validation_share < 1:
            problems.append(f"validation_share must be in [0, 1), got {self.validation_share}")
        if self.max_seconds is not None and not self.max_seconds > 0:
            problems.append(f"max_seconds must be > 0 or None, got {self.max_seconds}")
        if not self.learning_rate > 0:
            problems.append(f"learning_rate must be > 0, got {self.learning_rate}")
        for name in ("weight_decay", "base_distinctness", "prior_strength"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("state_shrinkage", "min_persona_entropy", "min_base_entropy"):
            if not 0 <= getattr(self, name) <= 1:
                problems.append(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.loss not in LOSSES:
            problems.append(
                f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r} (pairwise answers: use bradley_terry_loss)"
            )
        if problems:
            raise ValueError("PersonaConfig: " + "; ".join(problems))

    @property
    def state_size(self) -> int:
        """Numbers per user: M * (K + 1)."""
        return self.n_personas * (self.n_bases + 1)

    @property
    def state_bounds(self) -> StateBounds:
        """The safeguard bounds on user states this configuration sets (models.state_bounds)."""
        return StateBounds(self.state_shrinkage, self.min_persona_entropy, self.min_base_entropy)

    @property
    def variant(self) -> str:
        """The model this configuration is: "amp-cf", "pref-linear" or "persona"."""
        if self.identity_bases:
            return "amp-cf"
        return "pref-linear" if self.n_personas == 1 else "persona"

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "PersonaConfig":
        """The configuration `name` ("persona", "pref-linear" or "amp-cf") with `overrides`.

        pref-linear has M = 1; amp-cf has identity bases and K = d (giving one of n_bases and
        embedding_dim sets the other).
        """
        if name not in PRESETS:
            raise ValueError(f"unknown persona preset {name!r}; valid: {', '.join(PRESETS)}")
        valid = {field.name for field in fields(cls)}
        unknown = sorted(set(overrides) - valid)
        if unknown:
            raise ValueError(f"{name} has no hyperparameter(s) {', '.join(unknown)}; valid: {', '.join(sorted(valid))}")
        settings: dict[str, Any] = {}
        if name == "pref-linear":
            settings = {"n_personas": 1}
        elif name == "amp-cf":
            dim = overrides.get("embedding_dim", overrides.get("n_bases", cls.embedding_dim))
            settings = {"identity_bases": True, "n_bases": dim, "embedding_dim": dim}
        return cls(**(settings | overrides))
