"""One trial of a session as an Inspect AI sample: messages, output, usage, scores, metadata.

`inspect_export` builds one log per condition from these samples. The conversation is
rebuilt from the scenario copy (framing, demonstrations, probe turns), or is the prompt as
sent when the copy does not match; human annotations and judge scores become Inspect
scores, the likelihood-probe options and the trial's record the sample's metadata. The ids
(`short_id`) are hashes of the session, so a re-export writes identical logs. inspect_ai is
imported inside the functions (the `inspect` extra); docs/export-format.md has the mapping.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from persona_tui.analysis.inspect_common import human_scores, judge_score_name
from persona_tui.run.prompts import conversation
from persona_tui.scenario.model import Scenario
from persona_tui.scoring.judgements import Judgement
from persona_tui.session.model import Annotation, OptionCell, Session, Trial, TrialKey

if TYPE_CHECKING:
    from inspect_ai.log import EvalSample
    from inspect_ai.model import ChatMessage, StopReason
    from inspect_ai.scorer import Score

_STOP_REASONS: dict[str, StopReason] = {
    "stop": "stop",
    "length": "max_tokens",
    "cancelled": "unknown",
}


def short_id(*parts: str) -> str:
    """A stable 22-character id (Inspect's ids have that length), so re-exports are identical."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:22]


def eval_sample(
    session: Session,
    scenario: Scenario | None,
    trial: Trial,
    cell: OptionCell | None,
    names: dict[str, str],
    labels: list[str],
    judged: dict[tuple[TrialKey, str], Judgement],
) -> EvalSample:
    """`trial` as one Inspect sample (id = probe, epoch = sample + 1), with its scores."""
    from inspect_ai.log import EvalSample
    from inspect_ai.model import ChatCompletionChoice, ChatMessageAssistant, ModelOutput

    header = session.header
    model_name = header.model.name
    sent = _messages_sent(scenario, trial)
    answer = ChatMessageAssistant(content=trial.response, model=model_name, source="generate")
    usage = model_usage(model_name, [trial])
    metadata: dict[str, Any] = {
        "seed": trial.seed,
        "prompt": trial.prompt,
        "prompt_mode": header.plan.prompt_mode,
        "finish_reason": trial.finish_reason,
        "condition": trial.condition,
        "replicate": trial.replicate,
        "probe": trial.probe,
        "sample": trial.sample,
        "started": trial.started,
        "seconds": trial.seconds,
        "annotations": [_annotation_data(a) for a in trial.annotations],
    }
    if cell is not None:
        metadata["options"] = option_cell_data(cell)
    scores = dict(_human_scores(trial.annotations, names, labels))
    for (trial_key, rubric), judgement in judged.items():
        if trial_key == trial.key:
            scores[judge_score_name(rubric)] = _judge_score(judgement)
    return EvalSample(
        id=trial.probe,
        epoch=trial.sample + 1,
        input=sent,
        target="",
        messages=[*sent, answer],
        output=ModelOutput(
            model=model_name,
            choices=[
                ChatCompletionChoice(
                    message=answer, stop_reason=_STOP_REASONS.get(trial.finish_reason, "unknown")
                )
            ],
            completion=trial.response,
            usage=usage,
            time=trial.seconds,
        ),
        scores=scores or None,
        metadata=metadata,
        model_usage={model_name: usage} if usage is not None else {},
        started_at=trial.started,
        completed_at=trial_end(trial),
        total_time=trial.seconds,
        working_time=trial.seconds,
        uuid=short_id(
            "sample",
            header.id,
            trial.condition,
            trial.probe,
            str(trial.sample),
            *([str(trial.replicate)] if trial.replicate else []),
        ),
    )


def _messages_sent(scenario: Scenario | None, trial: Trial) -> list[ChatMessage]:
    """The conversation the prompt was rendered from: framing, demonstrations, probe turns.

    Without a valid scenario copy, the prompt exactly as sent, as one user message.
    """
    from inspect_ai.model import ChatMessageAssistant, ChatMessageSystem, ChatMessageUser

    if scenario is None or not _has(scenario, trial):
        return [ChatMessageUser(content=trial.prompt)]
    probe = scenario.probe(trial.probe)
    condition = scenario.condition(trial.condition)
    out: list[ChatMessage] = []
    for message in conversation(condition, probe.turns, trial.turn_responses):
        if message.role == "system":
            out.append(ChatMessageSystem(content=message.content))
        elif message.role == "user":
            out.append(ChatMessageUser(content=message.content))
        else:
            out.append(ChatMessageAssistant(content=message.content))
    return out


def _has(scenario: Scenario, trial: Trial) -> bool:
    return any(c.id == trial.condition for c in scenario.conditions) and any(
        p.id == trial.probe and len(p.turns) == len(trial.turn_responses) + 1
        for p in scenario.probes
    )


def model_usage(model_name: str, trials: Iterable[Trial]) -> Any:
    """The token counts of `trials` as Inspect's ModelUsage (None for no trials)."""
    from inspect_ai.model import ModelUsage

    trials = list(trials)
    if not trials:
        return None
    prompt = sum(t.prompt_tokens for t in trials)
    completion = sum(t.completion_tokens for t in trials)
    return ModelUsage(
        input_tokens=prompt, output_tokens=completion, total_tokens=prompt + completion
    )


def trial_end(trial: Trial) -> str:
    """When the trial ended (ISO time), or its start as written when that is not ISO."""
    try:
        start = datetime.fromisoformat(trial.started)
    except ValueError:
        return trial.started
    return (start + timedelta(seconds=trial.seconds)).isoformat()


def _annotation_data(annotation: Annotation) -> dict[str, Any]:
    return {
        "annotator": annotation.annotator,
        "time": annotation.time,
        "label": annotation.label,
        "scales": dict(annotation.scores),
        "note": annotation.note,
        "blind": annotation.blind_seed is not None,
        "blind_seed": annotation.blind_seed,
    }


def option_cell_data(cell: OptionCell) -> dict[str, Any]:
    """A likelihood-probe cell as plain data for a sample's or a log's metadata."""
    return {
        "condition": cell.condition,
        "probe": cell.probe,
        "prompt": cell.prompt,
        "prompt_tokens": cell.prompt_tokens,
        "seconds": cell.seconds,
        "options": [
            {
                "id": o.id,
                "label": o.label,
                "text": o.text,
                "logprob": o.logprob,
                "mean_logprob": o.mean_logprob,
                "n_tokens": o.n_tokens,
                "token_logprobs": list(o.token_logprobs),
            }
            for o in cell.options
        ],
    }


# ---------------------------------------------------------------------------- scores


def _human_scores(
    annotations: Iterable[Annotation], names: dict[str, str], labels: Sequence[str]
) -> Iterator[tuple[str, Score]]:
    from inspect_ai.scorer import Score

    for annotation in annotations:
        for s in human_scores(annotation, names, labels):
            yield (
                s.name,
                Score(
                    value=s.value,
                    answer=s.answer,
                    explanation=s.explanation,
                    metadata=dict(s.metadata),
                ),
            )


def _judge_score(judgement: Judgement) -> Score:
    from inspect_ai.scorer import Score

    explanation = None
    if judgement.score is None:
        explanation = (
            f"no score: only {judgement.p_numbers:.3f} of the judge's probability fell on numbers"
        )
    return Score(
        value=math.nan if judgement.score is None else judgement.score,
        explanation=explanation,
        metadata={
            "rubric": judgement.rubric,
            "rubric_sha256": judgement.rubric_sha256,
            "judge_model": judgement.judge_model,
            "judge_sha256": judgement.judge_sha256,
            "judge_backend": judgement.judge_backend,
            "method": judgement.method,
            "p_numbers": judgement.p_numbers,
            "time": judgement.time,
        },
    )
