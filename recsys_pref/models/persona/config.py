"""PersonaConfig: the persona model's hyperparameters and its three presets."""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Literal

from recsys_pref.models.state_bounds import StateBounds

Loss = Literal["multinomial", "sampled_softmax", "bpr"]
LOSSES: tuple[str, ...] = ("multinomial", "sampled_softmax", "bpr")
Inference = Literal["exact", "encoder"]
INFERENCES: tuple[str, ...] = ("exact", "encoder")
PRESETS: tuple[str, ...] = ("persona", "pref-linear", "amp-cf")
Finetune = Literal["none", "softmax"]
FINETUNES: tuple[str, ...] = ("none", "softmax")


@dataclass(frozen=True)
class PersonaConfig:
    """Hyperparameters of the persona model.

    Defaults (M = 2, tau = 0.1, beta = 50 annealed from beta_0 = 3, user penalty 2 lambda) chosen
    on validation users (never test users) so that one configuration is both accurate and
    faithful (issue 11). Validation NDCG@100 of the exact state over the same ALS shared side
    (lambda 10, alpha 3), mean of split seeds 0, 1, 2 (per-seed spread about 0.01), and deletion
    faithfulness of the validation users' top 10 (removing the explaining persona moves the item
    out; a random persona: <= 0.006 in every row):

                                          ml-latest-small (d 64)   ml-100k (d 64)   ml-100k (d 32)
        M=1, user penalty lambda (= ALS)      -                    0.4454             -
        M=1, user penalty 2 lambda            -                    0.4528             -
        M=2, beta 3 (old default)          0.3586 / 0.41        0.4447 / 0.48     0.4567 / 0.46
        M=2, beta 10                       0.3586 / 0.89        0.4369 / 0.91          -
        M=2, beta 30, 3 lambda             0.3577 / 0.92        0.4444 / 0.91          -
        M=2, beta 30, 3 lambda, annealed   0.3584 / 0.92        0.4516 / 0.90          -
        M=2, beta 30, 2 lambda, annealed   0.3612 / 0.93        0.4467 / 0.91          -
        M=2, beta 50, 2 lambda, annealed   0.3608 / 0.95             -             0.4566 / 0.90
          (the default; synthetic: 0.4901 / 0.91 against 0.4714 / 0.54 at beta 3)

    Sharp responsibilities make a user's personas distinct tastes (mean cosine 0.1, against
    0.85 at beta 3), which is what deletion faithfulness needs. They cost accuracy only when
    the first E-steps freeze the initial split: annealing beta from 3 (soft) to 50 recovers it,
    and a heavier user penalty (2 lambda) helps the single-persona solve as well. tau hardly
    moves NDCG. Extra personas do not help accuracy: at this default M = 2 and 3 are 0.002-0.004
    test NDCG@100 below M = 1 (BENCHMARKS.md, issue 11); M = 2 stays the default because
    explanations, control and faithfulness need two distinct personas. EM at M = 2, beta 3, tau
    0.1 (iterations, CG steps per M-step; 0 = exact M-steps):

        (10, exact)  0.3590 / 0.4473     (10, 3)  0.3590 / 0.4476     (5, 2)  0.3591 / 0.4466
        (5, 3)       0.3592 / 0.4454     (3, 2)   0.3586 / 0.4434

    so (5, 2), 1.6x faster than (10, 3), is the default (InferenceSettings.cg_steps = 2).

    Model
    n_personas: M, personas per user (1 = PReF-linear).
    n_bases: K, shared base reward functions, 1 <= K <= d (DESIGN's budget: at most 64).
    embedding_dim: d, item embedding size (ALS's factors); with identity bases K = d.
    temperature: tau, divides persona rewards inside the attention softmax (score units):
        small tau makes attention pick the persona that likes the item most (a max), large
        tau makes it follow the prior pi_u (a fixed mixture).
    identity_bases: fix P = I (K = d): AMP-CF, personas live in item space.

    Shared side (models.persona.factorization): implicit's ALS with d factors.
    regularization: lambda, the L2 penalty of ALS (absolute, implicit's convention).
    alpha: confidence of a positive per unit of weight, in ALS and in the user solve.
    als_iterations: ALS sweeps fitting the item side.

    User state (models.persona.inference)
    inference: "exact" (default: each persona's weighted least-squares solve, EM over the
        personas' responsibilities for M > 1) or "encoder" (an amortized network trained with
        Lightning over the same frozen shared side; faster per user, less accurate).
    user_regularization_scale: the user solve's L2 penalty is this times `regularization`
        (1: ALS's own fold-in; > 1 shrinks folded-in states more than ALS's training did).
    em_iterations: EM steps after the deterministic initialisation (M > 1).
    responsibility_scale: beta, how sharply the E-step gives a history item to the persona
        that fits it best (the M-step does not depend on it).
    initial_responsibility_scale: beta_0, the first E-step's beta when annealing (it grows
        geometrically to beta; the last two E-steps use beta); None: beta throughout.
    persona_pseudocount: delta, Dirichlet pseudo-count that keeps every persona's weight > 0.

    Encoder (inference = "encoder" only; see models.persona.encoder)
    hidden_dim: width of the tanh hidden layer (Mult-DAE uses 600).
    input_dropout: share of history entries dropped while training (denoising).
    learning_rate, weight_decay: AdamW's step size and decoupled weight decay.
    batch_size: users per step. max_epochs: bound on passes over the training users.
    max_seconds: wall-clock budget of encoder training in seconds (None: no limit).
    patience: epochs without a better validation NDCG@100 before stopping.
    loss: "multinomial" (softmax over the catalog), "sampled_softmax" (against `n_negatives`
        uniformly drawn items shared by the batch) or "bpr" (Bradley-Terry on sampled pairs).
    n_negatives: sampled items per batch for "sampled_softmax".
    prior_strength: weight of the mean squared distance of encoder states from the batch mean.
    validation_share: share of training users held out inside the encoder's training for
        early stopping (0 trains max_epochs on every user).
    accelerator: Lightning accelerator ("cpu" by default; "auto" uses a GPU when present).
    strategy, devices: Lightning's strategy ("auto", or "ddp" for data-parallel training over
        `devices` processes: gloo on CPU, NCCL on GPUs) and device count, for every Lightning
        training (encoder, fine-tune; models.persona.training). batch_size is per process.
    progress: show Lightning's progress bar. Not a modelling choice.

    Fine-tune of the shared side (models.persona.finetune; after ALS, before the bases):
    finetune: "none" or "softmax" (item rewards trained through the exact user solve under a
        softmax over the catalog of each user's held-out items).
    finetune_epochs, finetune_patience: bound on epochs; epochs without a better validation
        NDCG@100 (of the exact inference, on validation_share of the users) before stopping.
    finetune_learning_rate: Adam's step size. finetune_batch_size: users per step.
    finetune_temperature: the softmax's temperature (score units, or cosine units).
    finetune_cosine: train cosines (unit item rewards, the state normalised in the loss); the
        fitted model's exact inference then scales every user's state too (its largest persona
        to unit length), as the loss did, so its scores are cosines (InferenceSettings.unit_scale).
    finetune_holdout: share of each training history hidden from the solve as its targets.
    finetune_negatives: 0 for the full softmax over the catalog, else uniform negatives per batch.

    Popularity prior (models.persona.popularity):
    popularity_prior: eta >= 0, item biases b_i = eta log(1 + n_i) (n_i: training users of item
        i; score units), or "auto" (needs finetune = "softmax"): eta chosen on the fine-tune's
        validation users from popularity.POPULARITY_PRIORS. 0: no prior (default).

    State bounds (safeguards against echo chambers; models.state_bounds; all 0 = off, which
    leaves every result bit-identical), applied at fold-in toward `prior_state()`:
    state_shrinkage: s in [0, 1], each state becomes (1 - s) state + s prior.
    min_persona_entropy: floor in [0, 1] on the entropy of softmax(pi_u), as a share of log M.
    min_base_entropy: floor in [0, 1] on the entropy of each persona's base weights
        c_mk^2 / |c_m|^2, as a share of log K.

    seed: seeds ALS's initialisation (and the encoder's training).
    """

    n_personas: int = 2
    n_bases: int = 64
    embedding_dim: int = 64
    temperature: float = 0.1
    identity_bases: bool = False
    regularization: float = 10.0
    alpha: float = 3.0
    als_iterations: int = 15
    inference: Inference = "exact"
    em_iterations: int = 5
    responsibility_scale: float = 50.0
    initial_responsibility_scale: float | None = 3.0
    user_regularization_scale: float = 2.0
    persona_pseudocount: float = 1.0
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
    prior_strength: float = 0.0
    state_shrinkage: float = 0.0
    min_persona_entropy: float = 0.0
    min_base_entropy: float = 0.0
    validation_share: float = 0.1
    seed: int = 0
    accelerator: str = "cpu"
    strategy: str = "auto"
    devices: int = 1
    progress: bool = True
    finetune: Finetune = "none"
    finetune_epochs: int = 30
    finetune_patience: int = 3
    finetune_learning_rate: float = 1e-3
    finetune_batch_size: int = 1024
    finetune_temperature: float = 0.1
    finetune_cosine: bool = False
    finetune_holdout: float = 0.2
    finetune_negatives: int = 0
    popularity_prior: float | Literal["auto"] = 0.0

    def __post_init__(self) -> None:
        problems = []
        for name in ("n_personas", "n_bases", "embedding_dim", "als_iterations", "hidden_dim", "batch_size",
                     "max_epochs", "patience", "n_negatives", "devices", "finetune_epochs", "finetune_patience",
                     "finetune_batch_size"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.temperature > 0:
            problems.append(f"temperature must be > 0, got {self.temperature}")
        if self.identity_bases and self.n_bases != self.embedding_dim:
            problems.append(
                f"identity_bases needs n_bases == embedding_dim (K = d), got {self.n_bases} and {self.embedding_dim}"
            )
        if self.n_bases > self.embedding_dim:
            problems.append(f"n_bases (K = {self.n_bases}) must be <= embedding_dim (d = {self.embedding_dim})")
        if self.inference not in INFERENCES:
            problems.append(f"inference must be one of {', '.join(INFERENCES)}, got {self.inference!r}")
        if self.em_iterations < 0:
            problems.append(f"em_iterations must be >= 0, got {self.em_iterations}")
        for name in ("regularization", "alpha", "responsibility_scale", "persona_pseudocount",
                     "user_regularization_scale"):
            if not getattr(self, name) > 0:
                problems.append(f"{name} must be > 0, got {getattr(self, name)}")
        if self.initial_responsibility_scale is not None and not self.initial_responsibility_scale > 0:
            problems.append(f"initial_responsibility_scale must be > 0 or None, got {self.initial_responsibility_scale}")
        if not 0 <= self.input_dropout < 1:
            problems.append(f"input_dropout must be in [0, 1), got {self.input_dropout}")
        if not 0 <= self.validation_share < 1:
            problems.append(f"validation_share must be in [0, 1), got {self.validation_share}")
        if self.max_seconds is not None and not self.max_seconds > 0:
            problems.append(f"max_seconds must be > 0 or None, got {self.max_seconds}")
        if not self.learning_rate > 0:
            problems.append(f"learning_rate must be > 0, got {self.learning_rate}")
        for name in ("weight_decay", "prior_strength"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("state_shrinkage", "min_persona_entropy", "min_base_entropy"):
            if not 0 <= getattr(self, name) <= 1:
                problems.append(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.finetune not in FINETUNES:
            problems.append(f"finetune must be one of {', '.join(FINETUNES)}, got {self.finetune!r}")
        if not (self.finetune_learning_rate > 0 and self.finetune_temperature > 0):
            problems.append("finetune_learning_rate and finetune_temperature must be > 0")
        if not 0 < self.finetune_holdout < 1:
            problems.append(f"finetune_holdout must be in (0, 1), got {self.finetune_holdout}")
        if self.finetune_negatives < 0:
            problems.append(f"finetune_negatives must be >= 0 (0: full softmax), got {self.finetune_negatives}")
        if self.popularity_prior == "auto":
            if self.finetune != "softmax" or not self.validation_share > 0:
                problems.append("popularity_prior='auto' is chosen on the fine-tune's validation users: it needs "
                                "finetune='softmax' and validation_share > 0 (or give eta as a number)")
        elif isinstance(self.popularity_prior, str) or not self.popularity_prior >= 0:
            problems.append(f"popularity_prior must be a number >= 0 or 'auto', got {self.popularity_prior!r}")
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
        embedding_dim sets the other); elsewhere a smaller embedding_dim alone lowers K to d.
        """
        if name not in PRESETS:
            raise ValueError(f"unknown persona preset {name!r}; valid: {', '.join(PRESETS)}")
        valid = {field.name for field in fields(cls)}
        unknown = sorted(set(overrides) - valid)
        if unknown:
            raise ValueError(f"{name} has no hyperparameter(s) {', '.join(unknown)}; valid: {', '.join(sorted(valid))}")
        settings: dict[str, Any] = {}
        if "embedding_dim" in overrides and "n_bases" not in overrides:  # K defaults to at most d
            settings["n_bases"] = min(cls.n_bases, overrides["embedding_dim"])
        if name == "pref-linear":
            settings["n_personas"] = 1
        elif name == "amp-cf":
            dim = overrides.get("embedding_dim", overrides.get("n_bases", cls.embedding_dim))
            settings = {"identity_bases": True, "n_bases": dim, "embedding_dim": dim}
        return cls(**(settings | overrides))
