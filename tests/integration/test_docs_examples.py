"""Every command example README.md and docs/ show, run as written, so the docs cannot drift.

Examples are read from the documents themselves, not copied here: console blocks (README's
``.venv/bin/savedmodel ...`` lines, reference.md's ``$ savedmodel ...`` lines with the output they
quote) run in document order against a GCS JSON-API server holding the buckets they name; inline
examples (```savedmodel validate MODEL --releases```) run each in a fresh local world where the
placeholders (MODEL, BASE, URL, ...) name real models. Optional ``[--flag X]`` parts are run too
(alternatives ``[a|b]`` and repetitions ``[NAME ...]`` are left out). A mention of a command
without arguments (```savedmodel gc```) must name a command and options that exist. The only
change made to a command is the test server's anonymous token for ``token=google_default``.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import yaml

from airflow_savedmodel.cli import build_parser
from airflow_savedmodel.format.builder import SavedModelBuilder
from airflow_savedmodel.format.graphdef import GraphBuilder
from airflow_savedmodel.format.servable import DenseLayer, build_dense_meta_graph, export_dense_model
from airflow_savedmodel.location import resolve
from airflow_savedmodel.signing.keys import Signer
from airflow_savedmodel.storage import signed
from airflow_savedmodel.storage.publish import publish

from integration.servers import GcsServer
from signing_keys import key_pair

ROOT = Path(__file__).resolve().parents[2]
DOCS = ["README.md", "docs/concepts.md", "docs/reference.md", "docs/troubleshooting.md"]
PROGRAM = re.compile(r"^(?:\$ |\.venv/bin/)savedmodel ")

# Inline mentions that are synopses, not commands.
SYNOPSES = {"savedmodel COMMAND ..."}
# Exit codes other than 0 that an example is documented to have (exit 1: a breaking change,
# an invalid model).
EXIT = {
    "savedmodel diff gs://serving/ranker gs://training/exports/2026-12-01/model": 1,
    "savedmodel validate gs://training/exports/estimator --releases": 1,
}


@dataclass
class Example:
    doc: str
    text: str  # the command as the document shows it, continuation lines joined
    output: list[str] = field(default_factory=list)  # the output the document quotes


def _code_blocks(text: str) -> list[tuple[str, list[str]]]:
    blocks, lang, lines = [], None, []
    for line in text.splitlines():
        if line.startswith("```"):
            if lang is None:
                lang, lines = line[3:].strip(), []
            else:
                blocks.append((lang, lines))
                lang = None
        elif lang is not None:
            lines.append(line)
    return blocks


def _shell_line(line: str) -> tuple[str, bool]:
    """The words a shell reads from one line (comments dropped), and whether the next continues it."""
    body = line.rstrip()
    continued = body.endswith("\\")
    return " ".join(shlex.split(body[:-1] if continued else body, comments=True)), continued


def console_examples(doc: str) -> list[Example]:
    examples: list[Example] = []
    for lang, lines in _code_blocks((ROOT / doc).read_text()):
        if lang not in ("console", "bash"):
            continue
        current: Example | None = None
        continued = False
        for line in lines:
            if continued and current is not None:
                words, continued = _shell_line(line)
                current.text += " " + words
            elif PROGRAM.match(line):
                words, continued = _shell_line(line)
                current = Example(doc, "savedmodel " + PROGRAM.sub("", words))
                examples.append(current)
            elif line.startswith(("$ ", ".venv/bin/")):
                current = None  # another program (make, curl)
            elif current is not None and line.strip():
                current.output.append(line.rstrip())
    return examples


def inline_examples(doc: str) -> list[Example]:
    text = (ROOT / doc).read_text()
    prose = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    found = []
    for match in re.finditer(r"`(savedmodel [^`]+)`", prose):
        found.append(Example(doc, " ".join(match.group(1).split())))
    return found


def _expand(text: str) -> str:
    """Optional parts kept, alternatives and repetitions dropped."""
    while True:
        new = re.sub(
            r"\[([^\[\]]*)\]",
            lambda m: "" if ("|" in m.group(1) or "..." in m.group(1)) else m.group(1),
            text,
        )
        if new == text:
            return " ".join(text.split())
        text = new


def _is_mention(text: str) -> bool:
    words = text.split()[1:]
    if words[0].endswith(","):  # a list of commands
        return True
    start = 2 if words and words[0] == "serving" else 1
    return all(w.startswith("--") for w in words[start:])


def _matches(quoted: list[str], actual: list[str]) -> bool:
    """The quoted lines in order, "..." standing for any number of lines."""
    pattern = "".join(
        r"(?:[^\n]*\n)*?" if line.strip() == "..." else re.escape(line) + r"\n" for line in quoted
    )
    return re.fullmatch(pattern, "".join(line + "\n" for line in actual)) is not None


def run(
    argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    assert argv[0] == "savedmodel", argv
    return subprocess.run(
        [sys.executable, "-m", "airflow_savedmodel", *argv[1:]],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=cwd,
    )


# -- the models the examples name -------------------------------------------------------------


def _layer(n_in: int = 3, n_out: int = 2, seed: int = 0) -> DenseLayer:
    rng = np.random.default_rng(seed)
    return DenseLayer(
        rng.standard_normal((n_in, n_out)).astype(np.float32), np.zeros(n_out, np.float32), "softmax"
    )


def classifier(url: str, **options: object) -> str:
    return export_dense_model(url, [_layer()], storage_options=dict(options) or None)


def renamed_input(url: str, options: dict) -> None:
    """The classifier's next export: input 'x' renamed 'features', output 'z' added."""
    meta, values = build_dense_meta_graph([_layer()], input_key="features")
    sig = meta.signature_def["serving_default"]
    sig.outputs["z"].CopyFrom(sig.outputs["y"])
    builder = SavedModelBuilder(url, options)
    builder.add_meta_graph_and_variables(["serve"], meta, variables=values)
    builder.save()


def estimator(url: str, options: dict) -> None:
    """A model with a boosted-trees op that no shipped release has a kernel for."""
    meta, values = build_dense_meta_graph([_layer()])
    g = GraphBuilder(meta.graph_def)
    boundaries = g.const("boundaries", np.array([0.0, 1.0], np.float32))
    g.node("bucketize", "BoostedTreesBucketize", ["x", boundaries], num_features=1)
    meta.graph_def.CopyFrom(g.graph)
    builder = SavedModelBuilder(url, options)
    builder.add_meta_graph_and_variables(["serve"], meta, variables=values)
    builder.save()


# -- console blocks on the GCS server ---------------------------------------------------------


@pytest.fixture(scope="module")
def gcs_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, str], Path]]:
    """A GCS server of its own (the docs' bucket names are fixed) holding what the examples read."""
    server = GcsServer()
    try:
        options = server.store.options
        fs = server.store.fs()
        for bucket in ("bucket", "serving", "training", "models"):
            fs.mkdir(bucket)
        local = tmp_path_factory.mktemp("docs") / "model"
        classifier(str(local))
        publish(str(local), "gs://bucket/model", version=1, base_options=options)
        publish(str(local), "gs://models/ranker", version=7, base_options=options)
        served = tmp_path_factory.mktemp("docs") / "served"
        export_dense_model(str(served), [_layer(seed=1)])  # last week's weights: not the new export
        publish(str(served), "gs://serving/ranker", version=7, base_options=options)
        classifier("gs://training/exports/2026-11-24/model", **options)
        renamed_input("gs://training/exports/2026-12-01/model", options)
        estimator("gs://training/exports/estimator", options)
        env = dict(os.environ, STORAGE_EMULATOR_HOST=server.endpoint)
        yield env, local
    finally:
        server.stop()


def _substituted(example: Example, local: Path) -> list[str]:
    text = _expand(example.text).replace("path/or/gs://bucket/model/1", "gs://bucket/model/1")
    text = text.replace("token=google_default", "token=anon")
    return [str(local) if word == "MODEL" else word for word in shlex.split(text)]


@pytest.mark.parametrize("doc", ["README.md", "docs/reference.md"])
def test_console_examples_run_as_shown(doc: str, gcs_world: tuple[dict[str, str], Path]) -> None:
    env, local = gcs_world
    examples = console_examples(doc)
    assert examples, f"{doc} has no command examples"
    for example in examples:
        done = run(_substituted(example, local), env)
        context = f"{doc}: `{example.text}` exited {done.returncode}:\n{done.stdout}{done.stderr}"
        assert done.returncode == EXIT.get(example.text, 0), context
        assert "Traceback" not in done.stderr, context
        if example.output:
            actual = (done.stdout + done.stderr).splitlines()
            assert _matches(example.output, actual), (
                f"{doc}: `{example.text}` prints\n"
                + "\n".join(actual)
                + "\nthe doc quotes\n"
                + "\n".join(example.output)
            )


def test_readme_python_api_example_prints_what_it_says(gcs_world: tuple[dict[str, str], Path]) -> None:
    env, _ = gcs_world
    blocks = [lines for lang, lines in _code_blocks((ROOT / "README.md").read_text()) if lang == "python"]
    (code,) = [b for b in blocks if any("SavedModel.open" in line for line in b)]
    quoted = [line.split("# ", 1)[1] for line in code if line.lstrip().startswith("print(") and "# " in line]
    done = subprocess.run(
        [sys.executable, "-c", "\n".join(code)], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == quoted


# -- inline examples on local disk ------------------------------------------------------------


def _inline() -> list[Example]:
    return [
        e for doc in DOCS for e in inline_examples(doc) if e.text not in SYNOPSES and not _is_mention(e.text)
    ]


def _mentions() -> list[Example]:
    return [e for doc in DOCS for e in inline_examples(doc) if e.text not in SYNOPSES and _is_mention(e.text)]


def local_world(root: Path) -> dict[str, str]:
    """Placeholder -> what it names, all real."""
    model = classifier(str(root / "model"))
    classifier(str(root / "new"))
    publish(model, str(root / "base"), version=1)
    np.savez(root / "inputs.npz", x=np.ones((2, 3), np.float32))
    (root / "spec.yaml").write_text(yaml.safe_dump({"signatures": {"serving_default": {}}}))
    keys = key_pair(root / "keys", "release")  # the published version is signed, PEM trusts it
    signed.sign(resolve(str(root / "base" / "1")), Signer.from_pem(keys.private_pem))
    return {
        "PEM": str(keys.public),
        "PRIVATE_PEM": str(keys.private),
        "MODEL": model,
        "FIXED": str(root / "fixed"),
        "NEW": str(root / "new"),
        "OLD": str(root / "base"),
        "SERVED": str(root / "base"),
        "BASE": str(root / "base"),
        "URL": str(root / "base" / "1"),
        "NAME": "dense/kernel",
        "KEY": "serving_default",
        "N": "2",
        "inputs.npz": str(root / "inputs.npz"),
        "spec.yaml": str(root / "spec.yaml"),
    }


@pytest.mark.parametrize("example", _inline(), ids=lambda e: e.text)
def test_inline_examples_run(example: Example, tmp_path: Path) -> None:
    places = local_world(tmp_path)
    text = _expand(example.text).replace("<serving release>", "2.15")
    argv = [places.get(word, word) for word in shlex.split(text)]
    leftover = [w for w in argv[2:] if re.fullmatch(r"[A-Z][A-Z_]+", w)]
    assert not leftover, f"{example.doc}: `{example.text}`: no real value for {leftover}"
    done = run(argv, cwd=tmp_path)
    assert done.returncode == EXIT.get(example.text, 0), (
        f"{example.doc}: `{example.text}`:\n{done.stdout}{done.stderr}"
    )


@pytest.mark.parametrize("example", _mentions(), ids=lambda e: e.text)
def test_mentioned_commands_and_options_exist(example: Example) -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    words = example.text.split()[1:]
    if words[0].endswith(","):  # the README's list of every command
        names = [w.strip(",") for w in words]
        assert sorted(names) == sorted(sub.choices), f"{example.doc} lists {names}"
        return
    command = sub.choices[words[0]]
    rest = words[1:]
    if words[0] == "serving" and rest:  # serving ACTION CONFIG: the action is a positional choice
        (action,) = [a for a in command._actions if a.choices and not a.option_strings]
        assert rest[0] in action.choices, f"{example.doc}: `{example.text}`: no such action"
        rest = rest[1:]
    known = {o for a in command._actions for o in a.option_strings}
    assert set(rest) <= known, f"{example.doc}: `{example.text}`: {set(rest) - known} unknown"


def test_examples_were_found() -> None:
    """The readers above see the examples (a changed fence or prompt would silently skip them)."""
    assert len(console_examples("README.md")) >= 7
    assert len(console_examples("docs/reference.md")) >= 4
    assert len(_inline()) >= 10
    assert len(_mentions()) >= 10
    assert any(e.output for e in console_examples("docs/reference.md"))
