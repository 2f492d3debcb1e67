"""The one table of what each condition is: its update rule and its between-campaign controller.

A condition is nothing more than this pair. Adding one is adding a row here (and, for a new
update rule, its class in ``updates.py``; for a new controller, its class in ``controllers.py``
and a line in ``CONTROLLERS`` that builds it from the chain's settings).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from selfregress.controllers import CARE, ES, Controller, Last


@dataclass(frozen=True)
class Condition:
    update: str        # reinforce | kl | ewc | grpo: the loss of a step (updates.make_update)
    controller: str    # last | es | care: where the next campaign starts (a key of CONTROLLERS)


CONDITIONS: dict[str, Condition] = {
    "naive": Condition("reinforce", "last"),
    "kl": Condition("kl", "last"),
    "ewc": Condition("ewc", "last"),
    "grpo": Condition("grpo", "last"),
    "es": Condition("reinforce", "es"),
    "care": Condition("reinforce", "care"),
    "grpo_es": Condition("grpo", "es"),
}

# The kl condition's estimators of KL(pi || pi_start), by name: the keys of losses.KL_ESTIMATORS
# (which needs torch; tests/test_losses.py checks the two agree), here for the torch-free config.
KL_ESTIMATOR_NAMES = ("k1", "k2", "k3")

# controller name -> its object, built from a chain's settings (a ChainConfig: its es_* and care_* fields)
CONTROLLERS: dict[str, Callable[..., Controller]] = {
    "last": lambda config: Last(),
    "es": lambda config: ES(slack=config.es_slack, min_delta=config.es_min_delta, patience=config.es_patience),
    "care": lambda config: CARE(gate=config.care_gate, regress=config.care_regress,
                                lr_decay=config.care_lr_decay, forget=config.care_forget),
}


def controller_for(config) -> Controller:
    """The controller of a chain's condition, with the chain's parameters."""
    return CONTROLLERS[CONDITIONS[config.condition].controller](config)
