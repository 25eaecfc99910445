"""The rules engine: pure, deterministic, no I/O and no clock (time is an argument)."""

from services.core.config import DEFAULT_RULES, RuleConfig
from services.core.engine import apply_order, check_signal, copy_state, evaluate, new_state, tick
from services.core.model import (
    CompiledOrder,
    Fix,
    HealthEvent,
    OrderState,
    Signal,
    SignalRejected,
)
from services.core.orders import compile_order

__all__ = [
    "DEFAULT_RULES",
    "CompiledOrder",
    "Fix",
    "HealthEvent",
    "OrderState",
    "RuleConfig",
    "Signal",
    "SignalRejected",
    "apply_order",
    "check_signal",
    "compile_order",
    "copy_state",
    "evaluate",
    "new_state",
    "tick",
]
