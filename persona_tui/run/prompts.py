"""How a trial becomes what the model sees.

Chat mode builds role-tagged messages and lets the backend render the model's own chat
template. Transcript mode writes a plain "User:/Assistant:" document that a base model
(an "autocomplete engine") continues; generation stops where the next "User:" would begin.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from persona_tui.backends.base import Backend, ChatMessage
from persona_tui.errors import PersonaError
from persona_tui.scenario.model import (
    Condition,
    PromptMode,
    Scenario,
    TrainingExample,
    TrainingFraming,
)

ResolvedMode = Literal["chat", "transcript"]

USER_TAG = "User:"
ASSISTANT_TAG = "Assistant:"
TRANSCRIPT_STOPS: tuple[str, ...] = ("\nUser:", "\nAssistant:")


def resolve_mode(mode: PromptMode, backend: Backend, scenario_id: str) -> ResolvedMode:
    """Pick the prompt mode actually used; `auto` means transcript when there is no template."""
    if mode == "transcript":
        return "transcript"
    if backend.has_chat_template:
        return "chat"
    if mode == "auto":
        return "transcript"
    raise PersonaError(
        f"scenario '{scenario_id}' sets prompt_mode = \"chat\", but the model "
        f'{backend.info.path} has no chat template; set prompt_mode = "auto" or '
        '"transcript" to run it as a plain User/Assistant transcript'
    )


def stop_strings(mode: ResolvedMode) -> tuple[str, ...]:
    """Stop strings for a mode: chat models end their turn themselves."""
    return TRANSCRIPT_STOPS if mode == "transcript" else ()


def conversation(
    condition: Condition, user_turns: Sequence[str], answers: Sequence[str]
) -> list[ChatMessage]:
    """Messages for the next model turn: framing, demonstrations, then the probe so far
    (each probe turn put as the condition puts it: as written, unless a test framing).

    `answers` are the model's earlier answers to `user_turns[:-1]`.
    """
    if len(answers) != len(user_turns) - 1:
        raise ValueError("need exactly one answer per earlier user turn")
    messages: list[ChatMessage] = []
    if condition.system:
        messages.append(ChatMessage("system", condition.system))
    for shot in condition.shots:
        messages.append(ChatMessage("user", shot.user))
        messages.append(ChatMessage("assistant", shot.assistant))
    for user, answer in zip(user_turns, answers, strict=False):
        messages.append(ChatMessage("user", condition.user_turn(user)))
        messages.append(ChatMessage("assistant", answer.strip()))
    messages.append(ChatMessage("user", condition.user_turn(user_turns[-1])))
    return messages


def framed_messages(framing: TrainingFraming, example: TrainingExample) -> list[ChatMessage]:
    """The messages a training example is shown as under `framing` (up to its answer):
    what training learns the answer after, and what data screening measures it after."""
    messages = []
    if framing.system:
        messages.append(ChatMessage("system", framing.system))
    messages.append(ChatMessage("user", framing.user_turn(example.user)))
    return messages


def render_transcript(messages: Sequence[ChatMessage]) -> str:
    """A plain document ending with "Assistant:" for a base model to continue.

    The system text opens the document as a preamble; each exchange is separated by a
    blank line. The prompt ends without a trailing space so the model's first token
    carries its own leading space, as in natural text.
    """
    parts: list[str] = []
    for message in messages:
        if message.role == "system":
            parts.append(message.content.strip() + "\n\n")
        elif message.role == "user":
            parts.append(f"{USER_TAG} {message.content.strip()}\n")
        else:
            parts.append(f"{ASSISTANT_TAG} {message.content.strip()}\n\n")
    return "".join(parts) + ASSISTANT_TAG


def render_prompt(mode: ResolvedMode, messages: Sequence[ChatMessage], backend: Backend) -> str:
    """The exact text sent to the model for these messages."""
    if mode == "chat":
        return backend.render_chat(messages)
    return render_transcript(messages)


def framing_chars(prompt: str, last_user_turn: str) -> int:
    """Length of the prompt's part before its last user turn (shared by a condition's trials).

    Backends with a prompt cache reuse this part exactly; 0 when the turn is not found.
    """
    return max(prompt.rfind(last_user_turn.strip()), 0)


def first_turn_prompt(
    scenario: Scenario, mode: ResolvedMode, backend: Backend, condition: str, probe: str
) -> str:
    """The exact prompt of a trial's first turn (a single-turn probe's whole prompt; what
    the likelihood probes score options after)."""
    messages = conversation(scenario.condition(condition), scenario.probe(probe).turns[:1], [])
    return render_prompt(mode, messages, backend)
