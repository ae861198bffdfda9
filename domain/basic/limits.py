"""Per-turn bounds: a dialog is user-written code, so every turn must end and stay small."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """What one turn of one dialog may use before it ends in a runtime error.

    Steps count statements executed, loop iterations and expression nodes evaluated, so an
    empty `WHILE TRUE ... WEND` is stopped as surely as a busy one. Copying lists and objects
    (values are copied when stored) is budgeted at 20 nodes per step. Sizes in bytes bound
    what a turn can leave behind: each stored value, the state kept at a HEAR, the messages.
    """

    max_steps: int = 100_000  # ON ERROR RESUME NEXT cannot skip this one
    max_string: int = 100_000  # characters in one text value
    max_list: int = 10_000  # items in one list
    max_value_nodes: int = 50_000  # items in one stored value, nested ones counted
    max_value_depth: int = 32  # nesting of lists and objects
    max_call_depth: int = 40  # frames: dialogs, SUBs and FUNCTIONs, recursion included
    max_outputs: int = 200  # TALK messages (and suggestions) in one turn
    # Bytes, as JSON in UTF-8 (how events keep them); the server sets them from GB_TURN_*.
    max_value_bytes: int = 64 * 1024  # one stored value: variable, item, memory, answer
    max_state_bytes: int = 256 * 1024  # the whole state a HEAR keeps until the next message
    max_output_bytes: int = 384 * 1024  # one turn's messages and suggestions together
    hear_retries: int = 3  # re-asks of a refused HEAR answer before it is left empty
