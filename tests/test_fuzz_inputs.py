"""Bad input, fuzzed: thousands of malformed profiles, command lines and dataset manifests.

Each one is either accepted or gets ONE line naming the problem and exit status 2 (a
``UserError``), never a traceback, and nothing is written to the results store or MLflow.
The examples are generated deterministically (``derandomize=True``) so CI sees the same ones.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image as PILImage

from benchmark import cli
from benchmark.core.errors import UserError
from benchmark.problems import data
from benchmark.run import plan, profiles, runner

FUZZ = settings(deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))

#: Numbers that break naive code: zero, negative, huge, non-integral, not numbers at all.
NUMBERS = st.one_of(st.sampled_from([0, -5, 1, 2, 16, 33, 10**12, 10**30, -(10**30), 2**63, 1.5, float("nan"),
                                     float("inf"), True, "x", "8", None, [], {}]), st.integers(-3, 70))
NAMES = st.one_of(st.sampled_from(["embedded", "set12", "trivial", "tv", "denoising_s25", "sr_x4", "../../etc/passwd",
                                   "/etc", "", ".", "..", "a/b", "émbedded", "名前", "x\x00y", "all", "auto"]),
                  st.text(max_size=8))
JUNK = st.recursive(st.one_of(st.none(), st.booleans(), NUMBERS, NAMES),
                    lambda inner: st.one_of(st.lists(inner, max_size=3),
                                            st.dictionaries(st.one_of(NAMES, st.integers(0, 3)), inner, max_size=3)),
                    max_leaves=6)


def weighted(common: st.SearchStrategy[Any], rare: st.SearchStrategy[Any], odds: int = 4) -> st.SearchStrategy[Any]:
    """``common`` ``odds - 1`` times in ``odds``, else ``rare`` (``one_of`` merges repeated
    strategies, so repeating one does not weight it)."""
    return st.integers(1, odds).flatmap(lambda i: rare if i == 1 else common)


def maybe(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly plausible values, sometimes junk, so that the fuzzer gets past the first check."""
    return weighted(valid, JUNK)


def usual(value: Any, other: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Most documents break in one place only: ``value`` is the valid choice."""
    return weighted(st.just(value), other, odds=6)


DATASET_ENTRY = usual({"name": "embedded", "crop": 32, "limit": 1}, st.one_of(
    NAMES,
    JUNK,
    st.fixed_dictionaries({"name": usual("embedded", NAMES)}, optional={
        "crop": NUMBERS, "resize": NUMBERS, "limit": NUMBERS, "mode": maybe(st.sampled_from(["gray", "rgb"])),
        "tasks": maybe(st.lists(NAMES, max_size=2)), "path": maybe(st.sampled_from(["/etc", "../..", "./nope"])),
        "bogus": JUNK}),
))
GOOD_PROFILE = st.fixed_dictionaries(
    {"name": usual("fuzz", st.one_of(NAMES, JUNK)),
     "methods": usual(["trivial"], st.one_of(st.just("all"), JUNK,
                                             st.lists(st.sampled_from(["trivial", "tv", "nope"]), max_size=3))),
     "tasks": usual(["denoising_s25"], st.one_of(JUNK, st.lists(st.sampled_from(
         ["denoising_s25", "inpainting_random50", "sr_x4", "nope"]), max_size=3))),
     "datasets": usual([{"name": "embedded", "crop": 32, "limit": 1}], maybe(st.lists(DATASET_ENTRY, max_size=2)))},
    optional={"seeds": usual([0], maybe(st.lists(NUMBERS, max_size=3))), "trajectory_every": usual(10, NUMBERS),
              "batch_size": usual(2, NUMBERS), "save_reconstructions": usual(True, JUNK),
              "metrics_off": usual(["lpips"], st.one_of(JUNK, st.lists(
                  st.sampled_from(["lpips", "ssim", "psnr", "nope"]), max_size=3))),
              "device": usual("cpu", st.sampled_from(["auto", "cuda:99", "gpu", "", "cpu:0"])),
              "training": usual({"dataset": "embedded"}, maybe(st.fixed_dictionaries(
                  {}, optional={"dataset": NAMES, "crop": NUMBERS, "resize": NUMBERS}))),
              "method_params": usual({}, maybe(st.dictionaries(st.sampled_from(["tv", "trivial", "nope"]), JUNK,
                                                               max_size=2))),
              "description": usual("", JUNK)},
)
#: Mostly one broken place in a plausible profile; sometimes an unknown key or no mapping at all.
PROFILE = weighted(GOOD_PROFILE, st.one_of(JUNK, st.tuples(GOOD_PROFILE, st.one_of(NAMES, st.integers()), JUNK).map(
    lambda t: {**t[0], t[1]: t[2]})), odds=6)


def one_line_user_error(exc: UserError) -> None:
    message = str(exc)
    assert message and "\n" not in message and "Traceback" not in message, message


class Planned(Exception):
    """Raised where a valid run would open its results store: validation got all the way through."""


@pytest.fixture(autouse=True)
def _offline_and_isolated(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def offline(url: str, *args: Any, **kwargs: Any) -> Path:
        raise UserError(f"could not download {url}: offline (test)")

    def planned(*args: Any, **kwargs: Any) -> None:
        raise Planned

    monkeypatch.setattr(data, "download", offline)
    monkeypatch.setattr(runner, "ResultsStore", planned)
    monkeypatch.setattr(runner, "Tracker", planned)
    yield
    data.manifests.cache_clear()


@settings(FUZZ, max_examples=1000)
@given(PROFILE)
def test_profile_parser_and_plan_refuse_bad_profiles_in_one_line(doc: Any) -> None:
    try:
        profile = profiles.parse(doc, "fuzz.yaml")
        plan.make_plan(profile)
        event("valid")
    except UserError as exc:
        one_line_user_error(exc)
        event(f"refused: {str(exc).split(':')[1][:30] if ':' in str(exc) else exc}")


FLAGS = {
    "--methods": ["trivial", "tv", "trivial,tv", "nope", "", "trivial,trivial"],
    "--tasks": ["denoising_s25", "sr_x4,inpainting_random50", "nope", ","],
    "--datasets": ["embedded", "set12", "./nope", "../../etc", "/etc/passwd", "embedded,embedded", "名前"],
    "--seeds": ["0", "0,1", "-1", "x", "1,1", "99999999999999999999"],
    "--limit": ["1", "2", "0", "-1", "x", "10000000000"],
    "--batch-size": ["1", "0", "x", "-3"],
    "--executor": ["local", "nope"],
}
ARGS = st.lists(st.one_of(
    st.sampled_from(sorted(FLAGS)).flatmap(lambda flag: st.tuples(st.just(flag), weighted(
        st.sampled_from(FLAGS[flag]), NAMES.filter(lambda s: "\x00" not in s)))),
    st.tuples(weighted(st.just("--strict"), st.sampled_from(["--bogus", "--limit"]))),
), max_size=3)


@settings(FUZZ, max_examples=600)
@given(profile=weighted(PROFILE, st.sampled_from(["smoke", "nope", "name: [unclosed", "\x00", "::"])), args=ARGS)
def test_cli_gives_one_line_and_exit_2_and_writes_nothing(profile: Any, args: list[tuple[str, ...]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if isinstance(profile, str) and profile in ("smoke", "nope"):
            profile_arg = profile
        else:
            path = root / "profile.yaml"
            text = profile if isinstance(profile, str) else yaml.safe_dump(profile, allow_unicode=True)
            path.write_text(text, encoding="utf-8")
            profile_arg = str(path)
        argv = ["run", "--no-progress", "--no-report", "--results", str(root / "res"),
                "--tracking-uri", f"sqlite:///{root / 'ml.db'}", "--profile", profile_arg,
                *[part for arg in args for part in arg]]
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                code = cli.main(argv)
            except SystemExit as exit_:  # argparse: usage errors
                code = exit_.code  # type: ignore[assignment]
            except Planned:
                event("valid: planned")
                return
        lines = err.getvalue().strip().splitlines()
        event(f"refused: {lines[0].split(':')[1][:30] if lines and ':' in lines[0] else ''}")
        assert code == 2, (argv, err.getvalue())
        assert len(lines) == 1 and lines[0].startswith("error: "), (argv, err.getvalue())
        assert "Traceback" not in err.getvalue()
        assert not (root / "res").exists() and not (root / "ml.db").exists()


SHA = weighted(st.just("GOOD"), st.one_of(st.just("0" * 64), st.just("A" * 64), st.text(max_size=4), st.integers()))
FILE_NAMES = weighted(st.sampled_from(["a.png", "link.png", "missing.png", "dir.png"]), st.one_of(st.sampled_from(
    ["../../etc/passwd", "/etc/passwd", ".hidden", "sub/a.png", "..", "../outside.png"]), NAMES))
GOOD_MANIFEST = st.fixed_dictionaries(
    {"name": usual("tiny", st.sampled_from(["embedded", "../up", "a/b", "", "x\x00"])),
     "description": usual("d", JUNK), "mode": usual("gray", st.one_of(st.just("rgb"), JUNK)),
     "role": usual("test", st.one_of(st.just("train"), JUNK)),
     "files": usual({"a.png": "GOOD"}, maybe(st.dictionaries(FILE_NAMES, SHA, max_size=3)))},
    optional={"url": usual(None, st.sampled_from(["https://example.org/{name}", "http://x/{name}", "https://x/{0}",
                                                  "https://x/{nope}", "ftp://x", "https://x/{stem}.png"]))},
)
MANIFEST = weighted(GOOD_MANIFEST, st.one_of(JUNK, st.tuples(GOOD_MANIFEST, NAMES, JUNK).map(
    lambda t: {**t[0], t[1]: t[2]})), odds=6)


@pytest.fixture(scope="module")
def manifest_world() -> Iterator[Path]:
    """A manifests folder and a data folder holding a good PNG, a symlink to a file outside the
    data folder, and a folder where a file should be."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "manifests").mkdir()
        tiny = root / "data" / "tiny"
        tiny.mkdir(parents=True)
        PILImage.fromarray(np.full((40, 40), 7, dtype=np.uint8)).save(tiny / "a.png")
        (root / "outside.png").write_bytes((tiny / "a.png").read_bytes())
        os.symlink(root / "outside.png", tiny / "link.png")
        (tiny / "dir.png").mkdir()
        yield root


@settings(FUZZ, max_examples=500)
@given(doc=MANIFEST)
def test_manifest_loader_refuses_bad_manifests_and_paths(doc: Any, manifest_world: Path) -> None:
    good = data.sha256_of(manifest_world / "data" / "tiny" / "a.png")
    if isinstance(doc, dict) and isinstance(doc.get("files"), dict):  # mostly the right checksum
        doc["files"] = {k: (good if v == "GOOD" else v) for k, v in doc["files"].items()}
    (manifest_world / "manifests" / "tiny.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(data, "MANIFEST_DIR", manifest_world / "manifests")
        mp.setenv("DIPBENCH_DATA", str(manifest_world / "data"))
        mp.setenv("DIPBENCH_CACHE", str(manifest_world / "cache"))
        data.manifests.cache_clear()
        try:
            for name in data.manifests():
                images = data.load(name, crop=32)
                for image in images:
                    # Only the good file can get this far: never the symlink, never a path.
                    assert image.file == "a.png" and image.sha256 == good
                event(f"loaded {len(images)} image(s)")
        except UserError as exc:
            one_line_user_error(exc)
            event(f"refused: {str(exc).split(': ')[1][:25]}")
        finally:
            data.manifests.cache_clear()
