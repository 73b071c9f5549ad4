"""`studio-embeddings demo` on the emulator: both providers, both frameworks, sensible answers."""

from __future__ import annotations

import pytest

from studio_embeddings.cli import main


def test_demo_runs_on_the_emulator_and_retrieves_the_expected_documents(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "offline emulator" in out
    for heading in ("== nebius on the emulator ==", "== yandex on the emulator =="):
        assert heading in out
    for cls in ("NebiusEmbeddings", "YandexEmbeddings", "NebiusEmbedding:", "YandexEmbedding:"):
        assert cls in out
    answers = out.split("Q: ")[1:]
    assert len(answers) == 12
    expected = {
        "Which tower stands in Paris?": "Eiffel Tower",
        "How do plants make sugar from sunlight?": "Photosynthesis",
        "When did astronauts first land on the Moon?": "Apollo 11",
        "How long should I boil pasta?": "cook pasta",
    }
    for answer in answers:
        question = answer.splitlines()[0]
        assert expected[question] in answer.splitlines()[1]


def test_demo_single_provider(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--provider", "nebius"]) == 0
    out = capsys.readouterr().out
    assert "== nebius" in out
    assert "== yandex" not in out
