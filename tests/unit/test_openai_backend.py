"""The OpenAI-compatible backend against a real server on loopback (llama_cpp.server).

The server runs the tiny GGUF written by the suite, so its output can be compared with the
llama.cpp backend loading the same file in-process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from persona_tui.backends.base import ChatMessage, GenerationRequest
from persona_tui.backends.openai.backend import OpenAIBackend
from persona_tui.backends.openai.http import ServerSettings
from persona_tui.backends.openai.ref import (
    CHAT_ENVELOPE_HEADER,
    OpenAIRef,
    parse_chat_envelope,
    parse_openai_ref,
    render_chat_envelope,
)
from persona_tui.errors import GenerationError, ModelLoadError, PromptTooLongError
from persona_tui.values import SamplingParams
from tests.server_fixture import ServerProcess, free_port, server_available, start_server

needs_server = pytest.mark.skipif(
    not server_available(), reason="needs pip install 'llama-cpp-python[server]'"
)
FAST = ServerSettings(connect_timeout=2.0, read_timeout=30.0, retries=2, backoff_seconds=0.05)


def request(
    prompt: str, seed: int = 1, stop: tuple[str, ...] = (), **sampling: float
) -> GenerationRequest:
    params = SamplingParams(**{"max_tokens": 16, **sampling})  # type: ignore[arg-type]
    return GenerationRequest(prompt, seed, params, stop)


# ----------------------------------------------------------------- references, envelope


def test_parse_refs() -> None:
    assert parse_openai_ref("openai:http://127.0.0.1:8080/v1#qwen") == OpenAIRef(
        "http://127.0.0.1:8080/v1", "qwen"
    )
    assert parse_openai_ref("openai:https://gpu-box/v1/") == OpenAIRef("https://gpu-box/v1", "")
    ref = OpenAIRef("http://h:1/v1", "org/model-7b")
    assert parse_openai_ref(ref.text) == ref


@pytest.mark.parametrize(
    "text",
    [
        "openai:",
        "openai:ftp://x/v1",
        "openai:http:///v1",
        "http://x/v1",
        "openai:http://x:99999/v1",
    ],
)
def test_bad_refs_say_how_to_write_one(text: str) -> None:
    with pytest.raises(ModelLoadError, match=r"openai:http://127\.0\.0\.1:8080/v1#MODEL"):
        parse_openai_ref(text)


def test_chat_envelope_round_trips_any_text() -> None:
    messages = [
        ChatMessage("system", "Play the bully.\n\x1b[31m"),
        ChatMessage("user", 'He said "hi" 🙂'),
    ]
    prompt = render_chat_envelope(messages)
    assert prompt.startswith(CHAT_ENVELOPE_HEADER)
    assert parse_chat_envelope(prompt) == [{"role": m.role, "content": m.content} for m in messages]
    assert parse_chat_envelope("User: hi\nAssistant:") is None
    with pytest.raises(GenerationError, match="not valid JSON"):
        parse_chat_envelope(CHAT_ENVELOPE_HEADER + "[{")


def test_unreachable_server_is_a_clear_load_error() -> None:
    started = time.perf_counter()
    with pytest.raises(
        ModelLoadError, match=r"cannot reach the server .*connection refused.*3 attempts"
    ):
        OpenAIBackend.load(f"openai:http://127.0.0.1:{free_port()}/v1", settings=FAST)
    assert time.perf_counter() - started < 5


def test_missing_api_key_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PERSONA_TEST_KEY", raising=False)
    with pytest.raises(ModelLoadError, match="PERSONA_TEST_KEY"):
        OpenAIBackend.load("openai:http://127.0.0.1:9/v1", api_key_env="PERSONA_TEST_KEY")


# ------------------------------------------------------------------ against a server


@pytest.fixture(scope="module")
def server(
    tiny_chat_gguf: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    if not server_available():
        pytest.skip("needs pip install 'llama-cpp-python[server]'")
    logs = tmp_path_factory.mktemp("server-logs")
    running = start_server(tiny_chat_gguf, logs, interrupt_requests=False)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def backend(server: ServerProcess) -> OpenAIBackend:
    return OpenAIBackend.load(f"openai:{server.base_url}", settings=FAST)


@needs_server
def test_info_records_the_server_model(backend: OpenAIBackend, server: ServerProcess) -> None:
    info = backend.info
    assert (info.backend, info.name, info.path) == ("openai", server.model_id, server.ref)
    assert info.extra["base_url"] == server.base_url
    assert info.extra["server"] == "uvicorn"
    assert parse_openai_ref(info.path) == OpenAIRef(server.base_url, server.model_id)


@needs_server
def test_unknown_model_lists_what_the_server_serves(server: ServerProcess) -> None:
    with pytest.raises(ModelLoadError, match=f"does not serve 'nope'.*{server.model_id}"):
        OpenAIBackend.load(f"openai:{server.base_url}#nope", settings=FAST)


@needs_server
def test_streams_the_same_text_as_the_local_llama_cpp_backend(
    backend: OpenAIBackend, tiny_chat_gguf: Path
) -> None:
    from persona_tui.backends.llamacpp.backend import LlamaCppBackend

    local = LlamaCppBackend.load(tiny_chat_gguf, n_ctx=512, n_threads=1)
    try:
        for sampling in ({"temperature": 0.0}, {"temperature": 0.9}):
            chunks: list[str] = []
            remote = backend.generate(
                request("User: Hello world\nAssistant:", 5, **sampling), chunks.append
            )
            longer = {**sampling, "max_tokens": 40}
            here = local.generate(request("User: Hello world\nAssistant:", 5, **longer))
            # Same tokens. llama-cpp-python's server drops invalid UTF-8 bytes where the
            # local backends write U+FFFD, and counts max_tokens differently.
            assert remote.text
            assert here.text.replace("\ufffd", "").startswith(remote.text)
            assert "".join(chunks) == remote.text
            assert len(chunks) > 1
            assert remote.prompt_tokens == here.prompt_tokens
        assert backend.count_tokens("User: naïve 世界") == local.count_tokens("User: naïve 世界")
    finally:
        local.close()


@needs_server
def test_same_seed_same_text_other_seed_other_text(backend: OpenAIBackend) -> None:
    first = backend.generate(request("the bully", seed=11, temperature=1.0))
    again = backend.generate(request("the bully", seed=11, temperature=1.0))
    other = backend.generate(request("the bully", seed=12, temperature=1.0))
    assert first.text == again.text
    assert other.text != first.text


@needs_server
def test_max_tokens_gives_length(backend: OpenAIBackend) -> None:
    result = backend.generate(request("and you", max_tokens=6, temperature=0.0))
    assert result.finish_reason == "length"
    assert result.completion_tokens >= 1


@needs_server
def test_stop_strings_are_held_back_and_cut(backend: OpenAIBackend) -> None:
    full = backend.generate(request("what are you", max_tokens=24, temperature=0.0)).text
    assert len(full) >= 8, full
    stop = full[4:7]
    expected = full[: full.find(stop)]
    chunks: list[str] = []
    cut = backend.generate(
        request("what are you", stop=(stop,), max_tokens=24, temperature=0.0), chunks.append
    )
    assert cut.text == expected
    assert "".join(chunks) == expected
    assert cut.finish_reason == "stop"


@needs_server
def test_chat_envelope_goes_to_the_chat_endpoint(backend: OpenAIBackend) -> None:
    prompt = backend.render_chat([ChatMessage("user", "Hello")])
    chunks: list[str] = []
    result = backend.generate(request(prompt, max_tokens=5, temperature=0.0), chunks.append)
    assert result.finish_reason in ("stop", "length")
    assert "".join(chunks) == result.text
    with pytest.raises(GenerationError, match="only after generation"):
        backend.count_tokens(prompt)


@needs_server
def test_cancel_stops_within_a_token(backend: OpenAIBackend) -> None:
    cancel = threading.Event()
    chunks: list[str] = []

    def on_text(piece: str) -> None:
        chunks.append(piece)
        cancel.set()

    result = backend.generate(request("and", max_tokens=200, temperature=1.0), on_text, cancel)
    assert result.finish_reason == "cancelled"
    assert len(chunks) == 1
    # The connection was dropped cleanly: the next request works.
    assert backend.generate(request("and", max_tokens=3)).finish_reason in ("stop", "length")


@needs_server
def test_prompt_too_long(backend: OpenAIBackend) -> None:
    with pytest.raises(PromptTooLongError, match="does not fit the context"):
        backend.generate(request("hello world " * 400))


@needs_server
def test_parallel_calls_match_sequential_ones(backend: OpenAIBackend) -> None:
    expected = [backend.generate(request("you", seed=s, temperature=1.0)).text for s in range(4)]
    got: dict[int, str] = {}

    def run(seed: int) -> None:
        got[seed] = backend.generate(request("you", seed=seed, temperature=1.0)).text

    threads = [threading.Thread(target=run, args=(s,)) for s in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [got[s] for s in range(4)] == expected


# ------------------------------------------------------- keys, crashes and resuming


@needs_server
def test_api_key_from_env_and_server_killed_mid_stream(
    tiny_gguf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    running = start_server(tiny_gguf, tmp_path, api_key="sesame")
    try:
        monkeypatch.setenv("PERSONA_TEST_KEY", "wrong")
        with pytest.raises(ModelLoadError, match=r"refused .*HTTP 401.*\$PERSONA_TEST_KEY"):
            OpenAIBackend.load(running.ref, api_key_env="PERSONA_TEST_KEY", settings=FAST)
        monkeypatch.setenv("PERSONA_TEST_KEY", "sesame")
        backend = OpenAIBackend.load(running.ref, api_key_env="PERSONA_TEST_KEY", settings=FAST)
        assert "sesame" not in repr(backend.info)
        assert backend.info.extra["api_key_env"] == "PERSONA_TEST_KEY"

        # This server ends a running stream when another request arrives: a clean failure.
        first_piece = threading.Event()
        outcome: list[BaseException] = []

        def long_generation() -> None:
            try:
                backend.generate(
                    request("the", max_tokens=400, temperature=1.0), lambda _p: first_piece.set()
                )
            except GenerationError as error:
                outcome.append(error)

        worker = threading.Thread(target=long_generation)
        worker.start()
        assert first_piece.wait(30)
        backend.generate(request("and", max_tokens=2))
        worker.join()
        assert outcome and "without a finish reason" in str(outcome[0])

        chunks: list[str] = []

        def kill_after_first(piece: str) -> None:
            chunks.append(piece)
            if len(chunks) == 1:
                running.kill()

        with pytest.raises(GenerationError, match="this trial failed, resume the session"):
            backend.generate(request("the", max_tokens=400, temperature=1.0), kill_after_first)
        started = time.perf_counter()
        with pytest.raises(GenerationError, match="cannot reach the server"):
            backend.generate(request("the"))
        with pytest.raises(GenerationError, match=r"cannot reach the server.*\b1 attempt\b"):
            backend.generate(request("the"))  # known down: fails fast, no retries
        assert time.perf_counter() - started < 5
    finally:
        running.stop()


@needs_server
def test_session_survives_a_server_crash_and_resumes(tiny_gguf: Path, tmp_path: Path) -> None:
    from persona_tui.run.events import RunEvent, TrialFinished
    from persona_tui.run.lifecycle import create_session, open_session
    from persona_tui.run.plan import RunOptions
    from persona_tui.run.runner import Runner
    from persona_tui.scenario.parse import parse_scenario
    from persona_tui.session.store import load_session
    from tests.scenario_text import SMALL_SCENARIO

    scenario = parse_scenario(SMALL_SCENARIO)
    port = free_port()

    def responses(path: Path) -> dict[tuple[str, str, int], str]:
        return {(t.condition, t.probe, t.sample): t.response for t in load_session(path).trials}

    running = start_server(tiny_gguf, tmp_path, port=port)
    try:
        backend = OpenAIBackend.load(running.ref, settings=FAST)
        with create_session(scenario, backend, RunOptions(), tmp_path / "whole.toml") as store:
            assert Runner(scenario, backend, store).run(lambda _e: None) == "complete"

        def crash_after_two(event: RunEvent) -> None:
            if isinstance(event, TrialFinished) and event.done == 2:
                running.kill()

        with create_session(scenario, backend, RunOptions(), tmp_path / "crashed.toml") as store:
            status = Runner(scenario, backend, store).run(crash_after_two)
        assert status == "interrupted"
        assert len(responses(tmp_path / "crashed.toml")) == 2
    finally:
        running.stop()

    restarted = start_server(tiny_gguf, tmp_path, port=port)
    try:
        scenario, store = open_session(tmp_path / "crashed.toml")
        with store:
            backend = OpenAIBackend.load(store.session.header.model.path, settings=FAST)
            assert Runner(scenario, backend, store).run(lambda _e: None) == "complete"
    finally:
        restarted.stop()
    assert responses(tmp_path / "crashed.toml") == responses(tmp_path / "whole.toml")


@needs_server
def test_runner_with_parallel_requests_matches_a_sequential_run(
    backend: OpenAIBackend, tmp_path: Path
) -> None:
    from persona_tui.run.events import RunEvent, TrialStarted
    from persona_tui.run.lifecycle import create_session
    from persona_tui.run.plan import RunOptions
    from persona_tui.run.runner import Runner
    from persona_tui.scenario.parse import parse_scenario
    from persona_tui.session.store import load_session
    from tests.scenario_text import SMALL_SCENARIO

    scenario = parse_scenario(SMALL_SCENARIO)
    options = RunOptions(probes=["wish", "newcomer"], max_tokens=8)
    results = []
    for parallel in (1, 3):
        out = tmp_path / f"p{parallel}.toml"
        started: list[RunEvent] = []
        with create_session(scenario, backend, options, out) as store:
            status = Runner(scenario, backend, store).run(started.append, parallel=parallel)
        assert status == "complete"
        assert sum(isinstance(e, TrialStarted) for e in started) == 8
        results.append({t.key: t.response for t in load_session(out).trials})
    assert results[0] == results[1]


# ----------------------------------------------------------- likelihood probes on a server


@needs_server
def test_options_scored_on_the_server_equal_the_model_file_s(
    backend: OpenAIBackend, tiny_chat_gguf: Path, tmp_path: Path
) -> None:
    """The server's echoed prompt log-probabilities (llama-cpp-python's server) give the
    same option values as scoring with the model file itself."""
    from persona_tui.backends.llamacpp.backend import LlamaCppBackend
    from persona_tui.run.lifecycle import create_session
    from persona_tui.run.options import score_options
    from persona_tui.run.plan import RunOptions
    from persona_tui.scenario.parse import parse_scenario
    from tests.scenario_text import OPTIONS_SCENARIO

    scenario = parse_scenario(OPTIONS_SCENARIO)
    local = LlamaCppBackend.load(tiny_chat_gguf, n_threads=1)
    try:
        sessions = []
        for name, engine in (("server", backend), ("file", local)):
            with create_session(scenario, engine, RunOptions(), tmp_path / f"{name}.toml") as store:
                assert score_options(scenario, engine, store).complete
                sessions.append(store.session)
    finally:
        local.close()
    served, direct = (
        {(c.condition, c.probe, o.id): o for c in s.option_cells for o in c.options}
        for s in sessions
    )
    assert served.keys() == direct.keys() and served
    for key, option in served.items():
        assert option.n_tokens == direct[key].n_tokens
        for ours, theirs in zip(option.token_logprobs, direct[key].token_logprobs, strict=True):
            assert abs(ours - theirs) <= 1e-3


def test_a_server_without_prompt_logprobs_says_so_in_one_line() -> None:
    from persona_tui.backends.openai.logprobs import continuation_values
    from persona_tui.errors import PersonaError

    url = "http://127.0.0.1:1/v1"
    no_logprobs = {"choices": [{"text": "User: hi Assistant: yes", "logprobs": None}]}
    with pytest.raises(PersonaError, match="gives no prompt log-probabilities") as caught:
        continuation_values(no_logprobs, 4, url)
    assert "\n" not in str(caught.value) and "llama-server does not" in str(caught.value)
    echoed = {
        "choices": [
            {
                "logprobs": {
                    "text_offset": [0, 4, 10, 14],
                    "token_logprobs": [None, -1.0, -2.0, -3.0],
                    "tokens": [" Use", "r: hi ", "yes!", "P"],
                }
            }
        ],
        "usage": {"completion_tokens": 1},
    }
    assert continuation_values(echoed, 4, url) == [-2.0]  # "yes!", before the generated "P"
    assert continuation_values(echoed, 10, url) == [-1.0, -2.0]
    with pytest.raises(PersonaError, match="as one token"):
        continuation_values(echoed, 2, url)  # no token starts where the option does
