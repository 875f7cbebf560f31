"""The README's commands stay true: every `azote` command it shows parses against the CLI (templates by their
option names), every file a concrete command reads is in the repository or written by a command shown before
it, and the quick ones run as written at small sizes."""

import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer

from azote.cli.main import app

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
# Options whose value is a file or folder the command reads; a command's positional inputs are listed apart.
INPUT_OPTIONS = {"--policy", "--checkpoint", "--from", "--data", "--preset", "--templates", "--presets", "--image",
                 "--config", "--game-mapping"}
OUTPUT_OPTIONS = {"--out", "--save"}
POSITIONAL_INPUTS = {("serve",): 1, ("model-info",): 1, ("label",): None, ("convert-checkpoint",): 1,
                     ("data", "validate"): 1}
POSITIONAL_OUTPUTS = {("convert-checkpoint",): 1}  # index of the output among the positionals
# What a reader brings: the released checkpoint file and a frame of their own.
BROUGHT = {"path/to/ng.pt", "frame.png", "game_mapping.json"}
# Run as written, at these sizes, in this order (each may read what the one before wrote).
SMALL = {"--seconds": "2", "--steps": "20", "--episodes": "1", "--workers": "1"}
RUN = ["azote overlay video --game atari/Pong --skin", "azote label stream.mp4", "azote overlay render",
       "azote overlay video --game atari/Pong --preset", "azote bench --list"]


def placeholder(word: str) -> bool:
    """A word that stands for something the reader fills in: DIR, VIDEO..., <games>, [--heldout], a|b."""
    return bool(re.fullmatch(r"[A-Z][A-Z_]*(\.\.\.)?", word) or "..." in word or word.startswith(("<", "["))
                or ("|" in word and not word.startswith("{")))


def readme_commands() -> list[tuple[int, list[str], bool]]:
    """(line, argv, template) for every `azote` command in a bash block or an inline code span."""
    found = []
    in_block = False
    for number, line in enumerate(README.read_text().splitlines(), 1):
        if line.startswith("```"):
            in_block = line.startswith("```bash")
            continue
        spans = [line.split(" #")[0]] if in_block else re.findall(r"`(azote [^`]+)`", line)
        for span in spans:
            for part in span.split("&&"):
                words = [w for w in part.split() if not re.fullmatch(r"[A-Z_]+=\S*", w)]  # env settings
                if words[:1] == ["azote"]:
                    try:
                        argv = shlex.split(" ".join(words))
                    except ValueError:  # an apostrophe in a placeholder (`<every game but Doom's>`)
                        argv = words
                    # an inline `azote serve` without arguments names the command rather than showing a run of it
                    mention = not in_block and not any(w.startswith("-") for w in argv)
                    found.append((number, argv, argv is words or mention or any(map(placeholder, argv))))
    return found


def resolve(argv: list[str]) -> tuple[tuple[str, ...], Any, list[str]]:
    """The (sub)command an argv names, and the arguments left for it."""
    command = typer.main.get_command(app)
    path: tuple[str, ...] = ()
    rest = argv[1:]
    while rest and rest[0] in getattr(command, "commands", {}):  # typer may bring its own click
        path += (rest[0],)
        command, rest = command.commands[rest[0]], rest[1:]
    return path, command, rest


COMMANDS = readme_commands()


def test_the_readme_shows_commands():
    assert len(COMMANDS) >= 30 and sum(not t for _, _, t in COMMANDS) >= 15


@pytest.mark.parametrize("line, argv, template", COMMANDS, ids=[f"line{n}" for n, _, _ in COMMANDS])
def test_every_readme_command_parses(line, argv, template):
    path, command, rest = resolve(argv)
    assert path, f"README line {line}: `{' '.join(argv)}` names no azote command"
    known = {opt for p in command.params for opt in p.opts + p.secondary_opts}
    used = {w.split("=")[0] for w in rest if w.startswith("--")}
    assert used <= known, f"README line {line}: unknown options {sorted(used - known)} for azote {' '.join(path)}"
    if not template:
        command.make_context(" ".join(path), list(rest))  # values parse (types, choices, required arguments)


def test_what_a_readme_command_reads_exists_or_was_written_before():
    written: list[str] = []
    missing = []
    for line, argv, template in COMMANDS:
        if template:
            continue
        path, command, rest = resolve(argv)
        ctx = command.make_context(" ".join(path), list(rest))
        positionals = [v for p in command.params if p.param_type_name == "argument"
                       for v in (ctx.params[p.name] if isinstance(ctx.params[p.name], (list, tuple)) else [ctx.params[p.name]])
                       if v is not None]
        reads = [str(v) for i, v in enumerate(positionals)
                 if path in POSITIONAL_INPUTS and (POSITIONAL_INPUTS[path] is None or i < POSITIONAL_INPUTS[path])]
        for i, word in enumerate(rest[:-1]):
            if word in INPUT_OPTIONS:
                reads.append(rest[i + 1])
        for name in reads:
            if "://" in name or name in ("random", "expert") or name in BROUGHT:
                continue
            if not ((ROOT / name).exists() or any(name == w or name.startswith(w.rstrip("/") + "/") for w in written)):
                missing.append(f"line {line}: {name}")
        written += [rest[i + 1] for i, w in enumerate(rest[:-1]) if w in OUTPUT_OPTIONS]
        if path in POSITIONAL_OUTPUTS:
            written.append(str(positionals[POSITIONAL_OUTPUTS[path]]))
    assert not missing, "README commands read what nothing before them writes: " + "; ".join(missing)


def test_quick_readme_commands_run_as_written(tmp_path):
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    azote = str(Path(sys.executable).with_name("azote"))
    ran = []
    for start in RUN:
        matches = [argv for _, argv, template in COMMANDS if not template and " ".join(argv).startswith(start)]
        assert matches, f"the README no longer shows `{start} ...`"
        argv = list(matches[0])
        for i, word in enumerate(argv[:-1]):
            if word in SMALL:
                argv[i + 1] = SMALL[word]
        done = subprocess.run([azote, *argv[1:]], cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"`{' '.join(argv)}` failed: {done.stderr[-800:]}"
        ran.append(argv)
    assert (tmp_path / "stream.mp4").is_file() and (tmp_path / "pad.png").is_file()
    assert list((tmp_path / "data" / "labelled" / "actions").rglob("actions_raw.parquet"))
