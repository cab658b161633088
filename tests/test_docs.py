"""The docs checked against the code where they can be.

Every ``emolens ...`` command line shown in README.md, docs/*.md, the model cards and the teacher
outputs' README names a real command, and every option it passes exists, is not hidden (hidden
options are the deprecated spellings) and gets a value when it takes one: parsed by the CLI's own
click command, never run. Every repository file and ``emolens.x.y`` name a doc cites exists. Each
model card's summary table states what its ONNX file holds (architecture, input, crop spec,
classes, size, temperature), and no doc cites a path of the machine it was written on.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import json
import re
import shlex
from pathlib import Path

import pytest
import typer

from emolens.apps.cli import app

REPO = Path(__file__).resolve().parents[1]
WEIGHTS = REPO / "emolens" / "weights"
DOCS = sorted([REPO / "README.md", *(REPO / "docs").glob("*.md"), *WEIGHTS.glob("*.md"),
               REPO / "artifacts" / "teachers" / "README.md"])
CARDS = sorted(p for p in WEIGHTS.glob("*.md") if p.with_suffix(".onnx").exists())

#: Shell words that end one command and may start the next.
SEPARATORS = {";", "&&", "||", "|", "(", ")", "do", "then"}
#: Words of a doc's command line that stand for something left out.
PLACEHOLDERS = {"...", "…", "|", "ARGS"}
#: Repository paths a doc cites (``emolens/inference/video.py``, ``benchmarks/bench_crops.py``), and
#: package paths written from inside ``emolens/`` (``inference/capture.py``, as docs/architecture.md does).
REPO_PATH = re.compile(r"(?<![\w./-])((?:emolens|benchmarks|scripts|tests|docs|artifacts)/[\w./*-]*[\w*])")
PACKAGE_PATH = re.compile(r"(?<![\w./-])((?:apps|inference|data|models|training|evaluation)/[\w./-]*\w)")
#: Dotted Python names a doc cites (``emolens.preprocess.crop_face``).
PLACEHOLDER_PART = re.compile(r"(?!README|LICENSE|NOTICE)[A-Z][A-Z0-9_-]*")  # `emolens/models/NAME.py`: a file the reader writes
PYTHON_NAME = re.compile(r"(?<![\w.])(emolens(?:\.\w+)+)")
#: Paths of the machine a doc was written on: a reader does not have them.
MACHINE_PATH = re.compile(r"(?<![\w.])/(?:tmp|work|root|home)/")


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO))


def _command_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of every shell line in a fenced block (continuations joined) and of every
    inline code span that starts with ``emolens ``."""
    found: list[tuple[int, str]] = []
    fenced, pending, start = False, "", 0
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced, pending = not fenced, ""
            continue
        if fenced:
            if not pending:
                start = number
            pending += line.rstrip().removesuffix("\\") + " "
            if not line.rstrip().endswith("\\"):
                found.append((start, pending))
                pending = ""
        else:
            found += [(number, span.replace("\\|", "|"))
                      for span in re.findall(r"`(emolens [^`]+)`", line)]
    return found


def _invocations(text: str) -> list[list[str]]:
    """The argument lists after each ``emolens`` word that starts a command (``python -m emolens``,
    ``.venv/bin/emolens`` and ``torchrun ... -m emolens`` included); ``a|b`` subcommands give one
    invocation each."""
    text = re.sub(r"\$\{?\w+\}?", "", text)  # shell variables hide options the line does not show
    lexer = shlex.shlex(text, posix=True, punctuation_chars=";&()")
    lexer.whitespace_split, lexer.commenters = True, "#"
    try:
        words = list(lexer)
    except ValueError:  # an unbalanced quote in a shortened line: plain words will do
        words = text.split("#")[0].split()
    calls = []
    for i, word in enumerate(words):
        if (word == "emolens" or word.endswith("/emolens")) and (
                i == 0 or words[i - 1] in SEPARATORS | {"-m", "time"}):
            rest = words[i + 1:]
            end = next((j for j, w in enumerate(rest) if w in SEPARATORS - {"|"}), len(rest))
            rest = [w.strip("[]`") for w in rest[:end]]
            if rest and "|" in rest[0] and not rest[0].startswith("-"):
                calls += [[alternative, *rest[1:]] for alternative in rest[0].split("|")]
            else:
                calls.append(rest)
    return calls


@functools.cache
def _cli():
    """The click command typer builds from the app (built once: it takes a moment)."""
    return typer.main.get_command(app)


def _is_placeholder(word: str) -> bool:
    return word in PLACEHOLDERS or (word.isupper() and word.isalpha())


def _check(args: list[str], command=None, path=("emolens",)) -> str | None:
    """Why ``emolens ARGS`` does not parse as documented, or None. Checked against the click command
    typer builds (its public attributes only: typer carries its own copy of click); nothing runs,
    not even an option's callback."""
    command = command or _cli()
    path = list(path)
    while hasattr(command, "commands") and args and not args[0].startswith("-"):
        if _is_placeholder(args[0]):  # `emolens COMMAND -h`: any command
            return None
        alternatives = re.split(r"[|/]", args[0])  # `emolens analyze|live --age`
        if len(alternatives) > 1:
            return next(filter(None, (_check([a, *args[1:]], command, path) for a in alternatives)), None)
        if args[0] not in command.commands:
            return f"{' '.join(path)} has no command {args[0]!r} (it has {', '.join(command.commands)})"
        path.append(args[0])
        command, args = command.commands[args[0]], args[1:]
    options = {opt: p for p in command.params if p.param_type_name == "option" for opt in (*p.opts, *p.secondary_opts)}
    options |= dict.fromkeys(("-h", "--help"))
    where = " ".join(path)
    for i, word in enumerate(args):
        name = word.split("=")[0]
        if not name.startswith("-") or name == "-" or re.fullmatch(r"-[\d.]+", name):
            continue
        if name not in options:
            return f"{where}: no such option {name}"
        option = options[name]
        if option is None:
            continue
        if option.hidden:
            return f"{where} {name} is hidden (deprecated): use the option its help names"
        takes_value = not (option.is_flag or option.count)
        following = args[i + 1] if i + 1 < len(args) else None
        if takes_value and "=" not in word and following is not None and following.startswith("--"):
            return f"{where}: {name} requires a value"
    return None


def _all_invocations() -> list[tuple[str, list[str]]]:
    return [(f"{_rel(path)}:{number}", args)
            for path in DOCS for number, text in _command_lines(path) for args in _invocations(text)]


def test_the_docs_show_commands():
    """The extraction finds the commands it is meant to check (a regex gone wrong finds none)."""
    calls = _all_invocations()
    commands = {args[0] for _, args in calls if args}
    assert len(calls) > 100 and {"train", "evaluate", "export", "analyze", "serve", "data"} <= commands


def test_every_documented_command_parses():
    bad = [f"{where}: emolens {' '.join(args)}\n    -> {why}"
           for where, args in _all_invocations() if (why := _check(args))]
    assert not bad, "\n".join(bad)


def test_the_checker_rejects_what_it_should():
    """Each kind of drift the check above exists for is caught, and a sound line passes."""
    assert _check(["train", "--data", "DATA/fer2013", "--arch", "mini-xception", "--out", "runs/x"]) is None
    assert "no command 'trian'" in _check(["trian", "--data", "x"])
    assert "no command 'unpack'" in _check(["data", "unpack", "x"])
    assert "no such option --no-such-flag" in _check(["evaluate", "--model", "m", "--no-such-flag"])
    assert _check(["COMMAND", "-h"]) is None and _check(["cache", "info|clear"]) is None
    assert "hidden" in _check(["train", "--model", "mini-xception", "--data", "d", "--out", "o"])
    assert "--out requires a value" in _check(["export", "runs/x", "--out", "--int8"])
    assert _check(["export", "--temperature"]) is None  # an inline mention names the option
    assert "no such option --bogus" in _check(["analyze/live", "--bogus", "1"])
    assert [["analyze", "--age"], ["live", "--age"]] == _invocations("emolens analyze|live --age  # both")
    assert [["train", "--resume", "r"]] == _invocations("python -m emolens train --resume r; ls")


def _resolves(name: str) -> bool:
    """``emolens.a.b.c`` names a module, or an attribute of the longest module prefix."""
    parts = name.split(".")
    obj, k = importlib.import_module(parts[0]), 1
    while k < len(parts) and hasattr(obj, "__path__") and importlib.util.find_spec(".".join(parts[:k + 1])):
        obj, k = importlib.import_module(".".join(parts[:k + 1])), k + 1
    for attribute in parts[k:]:
        if not hasattr(obj, attribute):
            return False
        obj = getattr(obj, attribute)
    return True


def test_the_citation_check_rejects_what_it_should():
    assert _resolves("emolens.preprocess.crop_face") and _resolves("emolens.inference.detectors.base.Detection")
    assert not _resolves("emolens.preprocess.no_such_name") and not _resolves("emolens.inference.no_such_module")
    line = "see `emolens/inference/video.py`, inference/capture.py and benchmarks/bench_crops.py, not ../data/x"
    assert REPO_PATH.findall(line) == ["emolens/inference/video.py", "benchmarks/bench_crops.py"]
    assert PACKAGE_PATH.findall(line) == ["inference/capture.py"]


@pytest.mark.parametrize("path", DOCS, ids=_rel)
def test_cited_files_and_python_names_exist(path):
    """A module moved or renamed (``inference/video.py`` split in three) leaves no doc pointing at it."""
    missing = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        files = [REPO / p for p in REPO_PATH.findall(line)] + [REPO / "emolens" / p for p in PACKAGE_PATH.findall(line)]
        files = [f for f in files if not any(PLACEHOLDER_PART.fullmatch(part.split(".")[0]) for part in f.parts)]
        missing += [f"{_rel(path)}:{number}: {f.relative_to(REPO)}" for f in files
                    if not (any(REPO.glob(str(f.relative_to(REPO)))) if "*" in f.name else f.exists())]
        missing += [f"{_rel(path)}:{number}: {name}" for name in PYTHON_NAME.findall(line) if not _resolves(name)]
    assert not missing, "\n".join(missing)


@pytest.mark.parametrize("path", DOCS, ids=_rel)
def test_no_doc_cites_a_machine_path(path):
    hits = [f"{_rel(path)}:{n}: {line.strip()}"
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if MACHINE_PATH.search(line)]
    assert not hits, "\n".join(hits)


def _summary(card: Path) -> dict[str, str]:
    """The rows of a card's "Model summary" table, by their first cell."""
    text = card.read_text(encoding="utf-8")
    section = re.search(r"^## Model summary\n(.*?)(?=^## )", text, re.S | re.M)
    assert section, f"{_rel(card)}: no '## Model summary' section"
    rows = re.findall(r"^\| *([^|]+?) *\| *(.+?) *\|$", section.group(1), re.M)
    return {key.lower(): value for key, value in rows}


@pytest.mark.parametrize("card", CARDS, ids=_rel)
def test_model_card_matches_its_onnx_file(card):
    import onnxruntime as ort

    onnx = card.with_suffix(".onnx")
    session = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    meta = json.loads(session.get_modelmeta().custom_metadata_map["emolens"])
    crop, rows = meta["crop"], _summary(card)
    assert re.search(rf"`{re.escape(meta['model_name'])}`", rows["architecture"]), rows["architecture"]
    size = re.search(r"(\d+)×(\d+), (\d) channels?", rows["input"])
    assert size and size.groups() == (str(crop["size"]), str(crop["size"]), str(crop["channels"])), rows["input"]
    margin = re.search(r"margin (-?[\d.]+)", rows["crop"])
    assert margin and float(margin.group(1)) == pytest.approx(crop["margin"]), rows["crop"]
    assert f"contrast {crop.get('contrast', 'none')}" in rows["crop"], rows["crop"]
    count = re.match(r"(\d+) ", rows["classes"])
    if count:
        assert int(count.group(1)) == len(meta["classes"]), rows["classes"]
    else:
        assert [c.strip() for c in rows["classes"].split(",")] == meta["classes"], rows["classes"]
    megabytes = re.search(r"([\d.]+) MB", rows["file"])
    assert megabytes and float(megabytes.group(1)) == pytest.approx(onnx.stat().st_size / 1e6, rel=0.05), rows["file"]
    temperature = re.search(r"temperature ([\d.]+)", rows["file"])
    assert temperature and float(temperature.group(1)) == pytest.approx(meta["temperature"]), rows["file"]


@pytest.mark.parametrize("card", CARDS, ids=_rel)
def test_model_card_has_the_sections_of_a_card(card):
    """The card shape (timm / Hugging Face): what it is, data, recipe, reproduction, metrics,
    calibration, speed, limits, licence; history lives in the experiments log."""
    text = card.read_text(encoding="utf-8")
    headings = re.findall(r"^## (.+)$", text, re.M)
    for section in ("Model summary", "Data", "Training", "Reproduce", "Metrics", "Calibration", "Speed",
                    "Limits and biases", "Licence and provenance"):
        assert any(h.startswith(section) for h in headings), f"{_rel(card)}: no '## {section}' section"
    assert "docs/experiments.md" in text
    assert (REPO / "docs" / "experiments.md").exists()
