"""The dialog language (General Bots BASIC): parse, validate and run dialogs, one turn at a time.

Pure domain code: no I/O, no clock, no randomness, no eval of user text. Everything outside
comes in through the Platform port; every turn is bounded (Limits).

Public API
----------
parse(source: str, *, dialog: str = "", version: int | None = None) -> Program
    Raises BasicSyntaxError(line, column, message) for the first error in source order.
    dialog/version label the program (a loader sets them; CALL "other.bas" needs the version).

validate(source: str, *, known_dialogs: Iterable[str] = frozenset(),
         http_allowed: bool = False) -> Report
    Report.errors / Report.warnings: sorted lists of Diagnostic(line, column, message);
    Report.valid is False exactly when there are errors; Report.to_data() is the designer's
    {"valid", "errors", "warnings"} shape. A dialog in known_dialogs may be CALLed; names
    compare without ".bas" and case.

start(program: Program, *, dialog: str, version: int, args: Mapping | None = None,
      session: Mapping | None = None, limits: Limits = Limits()) -> State
    A dialog about to run: args become its variables, session its session values
    (session.user_email, session.user_name, session.bot_id...). Nothing runs yet.

resume(state: State, program_for: ProgramFor, user_input: str | None,
       platform: Platform, limits: Limits = Limits(), *, checkpoint=None) -> Turn
    Runs until a HEAR waits, the dialog ends, or a runtime error. Never raises for the
    dialog's own failures. checkpoint() is called every few steps and may raise
    BudgetExceeded (a PlatformError a platform also raises when outside calls are used up)
    to end the turn; ON ERROR RESUME NEXT cannot skip it. The first turn is
    resume(start(...), ..., None, ...); each user message is resume(turn.state, ..., text,
    ...). program_for(name, version) returns that exact Program; program_for(name, None)
    returns the live one with its version set (used by CALL "other.bas", whose frame then
    keeps that version).

Turn: outputs (each TALK, and HEAR prompts/re-asks), suggestions ({"text", "label"}),
    state (None when the dialog ended), waiting (a HEAR waits), pending (what it waits for),
    error (RuntimeFailure(line, message, dialog) or None), result (the value of RETURN).

State: to_data() -> dict of JSON types only; State.from_data(dict) (ValueError if malformed).
    Holds the dialog and version, frames (dialog/sub/function, variables, cursors: the path
    of (block key, statement index) from a routine's body to the running statement, loop
    state, ON ERROR flag), session values, suggestions and the pending HEAR.

Platform: what the machine calls (now, random, new_uuid, bot/user memory, create_task,
    send_mail, book, start_meet, write/read/list/delete_file, send_file, use_kb, clear_kb,
    think_kb, llm, set_context, log, wait), assembled from a core (clock, memory, log) and one
    keyword provider per area (tasks, email, calendar, meet, drive, kb, llm: see
    domain.basic.platform.AREAS); an area without a provider refuses with "the <area> area is
    not available yet". Any method may raise PlatformError(message), which becomes a runtime
    error at that line.

Semantics worth knowing
-----------------------
- HEAR re-asks a refused answer up to Limits.hear_retries (3) times with a type-specific
  prompt, then stores "" and goes on. Answering clears the suggestions on offer.
- A SUB/FUNCTION sees the dialog's variables; assigning one that exists updates it, a new
  name is local. Lists and objects are values (copied when stored), so a state behaves the
  same before and after JSON.
- `x = f(a)`, `CALL f(a)` and `CALL "other.bas"` may HEAR inside; a FUNCTION called inside a
  larger expression runs at once and may not HEAR.
- Keywords of later areas (tables, tools, schedule, http, BEGIN TALK blocks) parse and
  validate; running one is "the <area> area is not available yet".
- EXIT and RETURN in a called dialog go back to the caller, after its CALL.
- A keyword that takes a value without parentheses takes a `+`/`&` expression and the
  comparison applies to its result: `IF GET BOT MEMORY "k" = "v" THEN`; with parentheses it
  is a call: `GET BOT MEMORY("visits") + 1`.
- Values are plain JSON data; dates and times are text ("2025-03-14", "2025-03-14 09:26:53")
  in the platform clock's zone. Text `=` is case-sensitive; CONTAINS / `.contains` ignore
  case. Empty text, 0, NULL, FALSE, empty lists and empty objects are false.
- ON ERROR RESUME NEXT skips the failing statement in the nearest frame that enabled it
  (errors in a SUB reach a caller's handler); the step and work limits cannot be skipped.
- A `'` where an operand is expected and closed on its line is a string; elsewhere it
  starts a comment. A double-quoted string may span lines unless its closing quote would
  be followed by something no string can precede (then it is reported unterminated).
"""

from domain.basic.ast import Program
from domain.basic.errors import BasicSyntaxError, BudgetExceeded, PlatformError, RuntimeFailure
from domain.basic.limits import Limits
from domain.basic.machine import ProgramFor, Turn, resume, start
from domain.basic.platform import Platform, UnavailablePlatform
from domain.basic.report import Diagnostic, Report
from domain.basic.state import State
from domain.basic.validator import parse, validate
from domain.basic.values import Value

__all__ = [
    "BasicSyntaxError",
    "BudgetExceeded",
    "Diagnostic",
    "Limits",
    "Platform",
    "PlatformError",
    "Program",
    "ProgramFor",
    "Report",
    "RuntimeFailure",
    "State",
    "Turn",
    "UnavailablePlatform",
    "Value",
    "parse",
    "resume",
    "start",
    "validate",
]
