"""``studio-embeddings serve`` and the emulator's knobs: one source, every knob reachable."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from studio_embeddings.cli import build_parser, main
from studio_embeddings.cli import serve as serve_command
from studio_embeddings.emulator import Emulator, Faults, Knobs


def test_every_scalar_knob_has_a_serve_flag_with_its_help() -> None:
    serve = build_parser()._subparsers._group_actions[0].choices["serve"]  # type: ignore[union-attr]
    flags = {option for action in serve._actions for option in action.option_strings}
    described = Knobs.help()
    for f in dataclasses.fields(Knobs):
        if f.name in ("faults", "valid_keys"):
            continue
        assert "--" + f.name.replace("_", "-") in flags, f.name
        assert described[f.name], f.name
    # Flags that existed before they were generated keep their names.
    assert {"--host", "--port", "--latency-ms", "--yandex-rps", "--nebius-rpm"} <= flags


def test_serve_flags_become_knobs(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.setattr("studio_embeddings.emulator.serve", lambda **kw: seen.update(kw))
    argv = ["serve", "--port", "0", "--latency-ms", "80", "--yandex-rps", "0", "--nebius-rpm", "60"]
    assert main([*argv, "--nebius-over-limit-after", "5", "--no-shuffle"]) == 0
    assert seen == {
        "host": "127.0.0.1",
        "port": 0,
        "latency_ms": 80.0,
        "yandex_rps": None,  # 0 on the command line: no limit
        "nebius_rpm": 60,
        "nebius_over_limit_after": 5,
        "shuffle": False,
    }
    # Flags not given stay out, so the Knobs defaults are the only defaults.
    seen.clear()
    assert main(["serve"]) == 0
    assert seen == {"host": "127.0.0.1", "port": 8000}


def test_serve_refuses_a_bad_knob(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--latency-ms", "-1", "--port", "0"]) == 2
    assert "latency_ms" in capsys.readouterr().err


def test_knob_overrides_reads_only_given_flags() -> None:
    args = build_parser().parse_args(["serve", "--nebius-tpm", "0", "--seed", "0"])
    assert serve_command.knob_overrides(args) == {"nebius_tpm": None, "seed": 0}


def test_emulator_takes_knobs_whole_or_by_keyword() -> None:
    base = Knobs(latency_ms=5, nebius_rpm=3)
    emu = Emulator(knobs=base, nebius_rpm=None, valid_keys=["k"], faults=None)
    assert emu.knobs == dataclasses.replace(base, nebius_rpm=None, valid_keys=frozenset({"k"}))
    assert emu.knobs.faults == Faults()
    emu.configure(latency_ms=7)
    assert emu.knobs.latency_ms == 7
    emu.reset()
    assert emu.knobs.latency_ms == 5
    with pytest.raises(TypeError, match="latency_sec"):
        Emulator(latency_sec=1)
    with pytest.raises(TypeError, match="Unknown emulator knob"):
        emu.configure(latency_sec=1)
