"""Per-turn bounds: a dialog is user-written code, so every turn must end and stay small."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """What one turn of one dialog may use before it ends in a runtime error.

    Steps count statements executed, loop iterations and expression nodes evaluated, so an
    empty `WHILE TRUE ... WEND` is stopped as surely as a busy one. Copying lists and objects
    (values are copied when stored) is budgeted at 20 nodes per step.
    """

    max_steps: int = 100_000  # ON ERROR RESUME NEXT cannot skip this one
    max_string: int = 100_000  # characters in one text value
    max_list: int = 10_000  # items in one list
    max_value_nodes: int = 50_000  # items in one stored value, nested ones counted
    max_value_depth: int = 32  # nesting of lists and objects
    max_call_depth: int = 40  # frames: dialogs, SUBs and FUNCTIONs, recursion included
    max_outputs: int = 200  # TALK messages (and suggestions) in one turn
    hear_retries: int = 3  # re-asks of a refused HEAR answer before it is left empty
