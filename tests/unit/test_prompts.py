"""How a trial becomes what the model sees (persona_tui.run.prompts)."""

from __future__ import annotations

from pathlib import Path

import pytest

from persona_tui.backends.llamacpp.backend import LlamaCppBackend
from persona_tui.errors import PersonaError
from persona_tui.run.prompts import (
    TRANSCRIPT_STOPS,
    conversation,
    framing_chars,
    render_prompt,
    render_transcript,
    resolve_mode,
    stop_strings,
)
from persona_tui.scenario.model import Condition, Shot


def framed() -> Condition:
    return Condition(
        id="plays",
        label="Plays a bully",
        system="A school play rehearsal.",
        shots=(Shot("Play the bully, please.", "Hey, new kid!"),),
    )


def test_transcript_is_a_plain_document_ending_with_the_assistant_tag() -> None:
    messages = conversation(framed(), ["  What do you wish for?  "], [])
    assert render_transcript(messages) == (
        "A school play rehearsal.\n\n"
        "User: Play the bully, please.\n"
        "Assistant: Hey, new kid!\n\n"
        "User: What do you wish for?\n"
        "Assistant:"
    )
    assert stop_strings("transcript") == TRANSCRIPT_STOPS
    assert stop_strings("chat") == ()


def test_multi_turn_probes_carry_earlier_answers() -> None:
    messages = conversation(framed(), ["Hi.", "And now?"], [" Hello there. "])
    text = render_transcript(messages)
    assert text.endswith("User: Hi.\nAssistant: Hello there.\n\nUser: And now?\nAssistant:")
    with pytest.raises(ValueError):
        conversation(framed(), ["Hi.", "And now?"], [])


def test_framing_is_everything_before_the_last_user_turn() -> None:
    prompt = render_transcript(conversation(framed(), ["What do you wish for?"], []))
    cut = framing_chars(prompt, "What do you wish for?")
    assert prompt[:cut].endswith("\n\nUser: ")
    assert prompt[cut:] == "What do you wish for?\nAssistant:"
    assert framing_chars(prompt, "not in the prompt") == 0


def test_modes_follow_the_model_chat_template(tiny_gguf: Path, tiny_chat_gguf: Path) -> None:
    base = LlamaCppBackend.load(tiny_gguf, n_threads=1)
    chat = LlamaCppBackend.load(tiny_chat_gguf, n_threads=1)
    try:
        assert resolve_mode("auto", base, "s") == "transcript"
        assert resolve_mode("auto", chat, "s") == "chat"
        assert resolve_mode("transcript", chat, "s") == "transcript"
        with pytest.raises(PersonaError, match="has no chat template"):
            resolve_mode("chat", base, "s")
        messages = conversation(framed(), ["What do you wish for?"], [])
        rendered = render_prompt("chat", messages, chat)
        assert "What do you wish for?" in rendered and "Hey, new kid!" in rendered
        assert rendered != render_transcript(messages)
    finally:
        base.close()
        chat.close()
