import argparse
import math
import subprocess
import sys

import pytest
import torch

from core.audio import load_audio, loudness, save_audio
from vocalis.cli import build_parser, main


def _command_paths(parser: argparse.ArgumentParser, prefix=()):
    yield prefix
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _command_paths(sub, (*prefix, name))


def test_top_level_help_lists_the_command_groups():
    out = subprocess.run(
        [sys.executable, "-m", "vocalis", "--help"], capture_output=True, text=True, check=True
    )
    for group in ("audio", "data", "check"):
        assert f"    {group}" in out.stdout


def test_help_loads_no_torch():
    # building the parser must stay light: `vocalis --help` answers at once
    code = "import sys; from vocalis.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_help_names_the_transcription_defaults():
    from asr.transcribe import DEFAULT_CHUNK_SECONDS, DEFAULT_PAUSE_SECONDS
    from vocalis.commands.transcribe import HELP_CHUNK_SECONDS, HELP_PAUSE_SECONDS

    assert (HELP_CHUNK_SECONDS, HELP_PAUSE_SECONDS) == (
        DEFAULT_CHUNK_SECONDS,
        DEFAULT_PAUSE_SECONDS,
    )


def test_help_works_at_every_level(capsys):
    paths = list(_command_paths(build_parser()))
    assert ("audio", "convert") in paths
    for path in paths:
        with pytest.raises(SystemExit) as exit_info:
            main([*path, "--help"])
        assert exit_info.value.code == 0, path
        assert "usage: vocalis" in capsys.readouterr().out


def test_group_without_subcommand_shows_its_help_and_fails(capsys):
    assert main(["audio"]) == 2
    assert "info" in capsys.readouterr().err
    assert main([]) == 2


@pytest.mark.parametrize(
    "argv,message",
    [
        (["audio", "info", "/no/such/file.wav"], "no such audio file: '/no/such/file.wav'"),
        (["audio", "convert", "{tmp}/in.wav", "{tmp}/out.mp3"], "use one of .wav, .flac"),
        (
            ["audio", "convert", "{tmp}/in.wav", "{tmp}/out.wav", "--sample-rate", "-5"],
            "--sample-rate must be",
        ),
        (["audio", "info", "{tmp}/notaudio.wav"], "cannot read audio"),
        (["check", "--steps", "3"], "--steps must be at least 10"),
        (["train", "average", "{tmp}/none", "-o", "{tmp}/soup"], "no checkpoint at"),
    ],
)
def test_bad_input_gives_one_line_error_and_exit_2(tmp_path, capsys, argv, message):
    save_audio(tmp_path / "in.wav", torch.zeros(1, 1600), 16000)
    (tmp_path / "notaudio.wav").write_text("hello")
    assert main([a.format(tmp=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vocalis: error: ") and message in err
    assert err.count("\n") == 1


def test_audio_convert_resamples_and_normalises(tmp_path, capsys):
    t = torch.arange(44100) / 44100
    stereo = torch.stack([0.05 * torch.sin(2 * math.pi * 300 * t)] * 2)
    save_audio(tmp_path / "in.wav", stereo, 44100)
    assert (
        main(
            [
                "audio",
                "convert",
                str(tmp_path / "in.wav"),
                str(tmp_path / "out.flac"),
                "--sample-rate",
                "16000",
                "--lufs",
                "-20",
            ]
        )
        == 0
    )
    wav, rate = load_audio(tmp_path / "out.flac", mono=False)
    assert rate == 16000 and wav.shape == (1, 16000)
    assert loudness(wav, rate) == pytest.approx(-20.0, abs=0.1)
    assert main(["audio", "info", str(tmp_path / "out.flac")]) == 0
    assert "16000 Hz, 1 ch, 1.00 s" in capsys.readouterr().out


@pytest.mark.slow
def test_check_runs_end_to_end(tmp_path, capsys):
    assert main(["check", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "vocalis check passed" in out and "FAIL" not in out
    assert (tmp_path / "roundtrip.flac").exists() and (
        tmp_path / "train" / "model.safetensors"
    ).exists()
    from tts.valle import SHIPPED_CHECKPOINT

    if SHIPPED_CHECKPOINT.is_file():  # the TTS spoke a sentence of plausible length
        wav, rate = load_audio(tmp_path / "say.wav")
        assert 0.5 <= wav.shape[-1] / rate <= 20.0 and "ok   tts" in out
