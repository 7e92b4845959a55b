"""What a long command tells a person as it goes: an evaluation's stages and its answers with the time left."""

from __future__ import annotations

import io

from rich.console import Console

from harness.progress import ConsoleProgress, minutes
from harness.trial import evaluate_model


class RecordedAnswers:
    """An answer reporter that keeps what it hears."""

    def __init__(self) -> None:
        self.heard: list[tuple[int, int]] = []

    def stage(self, text: str) -> None:
        pass

    def answers(self, done: int, total: int) -> None:
        self.heard.append((done, total))


def test_an_evaluation_reports_its_answers_from_the_start_to_the_last_batch(legal):
    heard = RecordedAnswers()
    scores, _ = evaluate_model(legal, "tiny:llama", split="validation", limit=18, max_new_tokens=4, reporter=heard)
    assert scores.metrics["n"] == 18
    # zero as generation starts, then after each batch of 16 (the last one shorter)
    assert heard.heard == [(0, 18), (16, 18), (18, 18)]


def test_the_console_says_each_stage_and_the_answers_with_the_time_left():
    out = io.StringIO()
    progress = ConsoleProgress(Console(file=out, width=200))
    progress.stage("scoring the merged model on the stored test set test-v1")
    progress.answers(0, 200)
    progress.answers(16, 200)
    progress.answers(200, 200)
    lines = out.getvalue().splitlines()
    assert lines[0] == "scoring the merged model on the stored test set test-v1"
    assert lines[1].startswith("  16/200 answers, ") and lines[1].endswith(" left")
    assert lines[2].startswith("  200/200 answers, ") and "left" not in lines[2]  # done: nothing left to say


def test_durations_are_said_in_the_unit_a_person_reads():
    assert (minutes(45), minutes(720), minutes(9000)) == ("45 s", "12 min", "2.5 h")
