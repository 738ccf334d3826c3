"""Echo-chamber safeguards (DESIGN.md, "Safeguards against echo chambers"): calibrated
re-ranking, bounded user states, exploration slots, audit metrics and a feedback-loop
simulator. Everything is off by default: `SafeguardsConfig()` leaves slates unchanged."""
from recsys_pref.models.state_bounds import StateBounds, bound_state
from recsys_pref.safeguards.config import PRESETS, SafeguardsConfig, load_safeguards

__all__ = ["PRESETS", "SafeguardsConfig", "StateBounds", "bound_state", "load_safeguards"]
