"""Every bad argument is refused before anything is written, and a failed command leaves nothing it created."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import pytest

import lake
from lake.cli import build_parser, main
from lake.config import LakePaths, read_config
from lake.deid.profile import DEFAULT_RESEARCH_OPTIONS
from lake.errors import ConfigError, LakePathError, LockTimeoutError
from lake.ingest import ingest
from lake.sources import iter_sources
from lake.testing.synthetic import make_cohort

README = Path(__file__).resolve().parents[1] / "README.md"
DEFAULTS = sorted(o.value for o in DEFAULT_RESEARCH_OPTIONS)


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """Four DICOM files and one that is not DICOM."""
    src = tmp_path / "src"
    make_cohort(src, n_patients=2, studies_per_patient=1, n_images=2)
    (src / "README.dcm").write_text("not a DICOM file")
    return src


def tree(*roots: Path) -> set[Path]:
    """Every path under the roots (to show that a command wrote nothing)."""
    return {p for root in roots if root.exists() for p in root.rglob("*")}


def ingest_args(src: Path, lk: Path, *more: str) -> list[str]:
    return ["ingest", str(src), "--lake", str(lk), "--workers", "1", "--no-progress", *more]


# -- settings are checked at init and whenever lake.json is read ------------------------------------
@pytest.mark.parametrize("low,high", [(10, 5), (0, 5), (-3, 5), (30, 100_000)])
def test_init_refuses_a_bad_date_range_and_writes_nothing(
    tmp_path: Path, lake_home: Path, capsys: pytest.CaptureFixture[str], low: int, high: int
) -> None:
    before = tree(tmp_path, lake_home)
    assert main(["init", str(tmp_path / "lk"), "--date-offset-days", str(low), str(high)]) == 2
    err = capsys.readouterr().err
    assert f"date offset range {low} {high} is invalid" in err
    assert "0 < MIN <= MAX <= 3650" in err and "--date-offset-days" in err
    assert tree(tmp_path, lake_home) == before


@pytest.mark.parametrize(
    "settings,message",
    [
        ({"date_offset_days": (10, 5)}, "date offset range 10 5"),
        ({"burned_in_policy": "blur"}, "unknown burned-in policy 'blur'"),
        ({"options": ["retain_everything"]}, "unknown de-identification option 'retain_everything'"),
    ],
)
def test_api_init_refuses_bad_settings(tmp_path: Path, lake_home: Path, settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        lake.init(tmp_path / "lk", **settings)
    assert tree(tmp_path, lake_home) == set()


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("deid.date_offset_days", [10, 5], "date offset range 10 5 is invalid"),
        ("deid.date_offset_days", [30], "date offset range 30 is invalid"),
        ("deid.options", ["retain_everything"], "unknown de-identification option"),
        ("deid.burned_in_policy", "blur", "unknown burned-in policy"),
        ("deid.shift", 3, "unknown field(s) shift in deid"),
        ("pixels.shard_frames", 0, "pixels.shard_frames 0 is invalid"),
        ("pixels.codec", "jpeg-lossy", "unknown pixels.codec 'jpeg-lossy'"),
    ],
)
def test_a_hand_edited_lake_json_is_refused_before_an_ingest_starts(
    corpus: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    field: str,
    value: object,
    message: str,
) -> None:
    lk = tmp_path / "lk"
    key = tmp_path / "k.key"
    assert main(["init", str(lk), "--key-file", str(key)]) == 0
    config = json.loads((lk / "lake.json").read_text())
    section, name = field.split(".")
    config[section][name] = value
    (lk / "lake.json").write_text(json.dumps(config))
    capsys.readouterr()
    before = tree(lk, tmp_path / "k.key.vault")
    assert main([*ingest_args(corpus, lk), "--key-file", str(key)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert tree(lk, tmp_path / "k.key.vault") == before  # no run log, no commit, no lock file
    assert str(lk / "lake.json") in err and "Restore the value the lake was created with" in err
    with pytest.raises(ConfigError, match=re.escape(message)):
        read_config(LakePaths(lk), validate=True)


# -- options add to the defaults; --only-options replaces them --------------------------------------
def test_option_adds_to_the_defaults_and_info_shows_the_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lk = tmp_path / "lk"
    assert main(["init", str(lk), "--option", "retain_uids", "--date-offset-days", "5", "9"]) == 0
    assert read_config(LakePaths(lk)).deid.options == sorted([*DEFAULTS, "retain_uids"])
    capsys.readouterr()
    assert main(["info", "--lake", str(lk)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"deid_options\s+" + re.escape(", ".join(sorted([*DEFAULTS, "retain_uids"]))), out)
    assert re.search(r"date_offset_days\s+5 to 9", out)
    assert re.search(r"burned_in_policy\s+mask-or-quarantine", out)
    assert re.search(r"keep_crosswalk\s+no", out)
    assert re.search(r"on_update\s+replace", out)


def test_info_shows_the_update_policy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", str(tmp_path / "lk"), "--on-update", "flag"]) == 0
    capsys.readouterr()
    assert main(["info", "--lake", str(tmp_path / "lk")]) == 0
    assert re.search(r"on_update\s+flag", capsys.readouterr().out)


def test_only_options_replaces_the_defaults(tmp_path: Path) -> None:
    assert main(["init", str(tmp_path / "a"), "--only-options", "--option", "retain_uids"]) == 0
    assert read_config(LakePaths(tmp_path / "a")).deid.options == ["retain_uids"]
    assert main(["init", str(tmp_path / "b"), "--only-options"]) == 0  # the Basic Profile alone
    assert read_config(LakePaths(tmp_path / "b")).deid.options == []


def test_full_dates_replace_the_default_modified_dates(tmp_path: Path) -> None:
    assert main(["init", str(tmp_path / "lk"), "--option", "retain_longitudinal_full_dates"]) == 0
    options = read_config(LakePaths(tmp_path / "lk")).deid.options
    assert "retain_longitudinal_full_dates" in options and "retain_longitudinal_modified_dates" not in options
    assert set(options) - {"retain_longitudinal_full_dates"} == set(DEFAULTS) - {"retain_longitudinal_modified_dates"}


def test_api_options_are_the_complete_set(tmp_path: Path) -> None:
    assert lake.init(tmp_path / "a", options=["retain_uids"]).config.deid.options == ["retain_uids"]
    assert lake.init(tmp_path / "b").config.deid.options == DEFAULTS
    extended = lake.init(tmp_path / "c", options=[*DEFAULT_RESEARCH_OPTIONS, "retain_uids"])
    assert extended.config.deid.options == sorted([*DEFAULTS, "retain_uids"])


# -- a lake path that is a file ---------------------------------------------------------------------
def test_a_lake_path_that_is_a_file_is_a_clear_error(
    corpus: Path, tmp_path: Path, lake_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "notes.txt"
    file.write_text("mine")
    before = tree(tmp_path, lake_home)
    assert main(["init", str(file)]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert main(ingest_args(corpus, file)) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert main(ingest_args(corpus, file / "lake")) == 2
    assert "which is a file" in capsys.readouterr().err
    assert main(["info", "--lake", str(file)]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    with pytest.raises(LakePathError):
        lake.init(file)
    assert file.read_text() == "mine" and tree(tmp_path, lake_home) == before


# -- a failed command leaves nothing it created -----------------------------------------------------
def test_a_missing_source_creates_no_lake_and_no_key(
    tmp_path: Path, lake_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = tree(tmp_path, lake_home)
    assert main(ingest_args(tmp_path / "does-not-exist", tmp_path / "new")) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main([*ingest_args(tmp_path / "nope", tmp_path / "new"), "--key-file", str(tmp_path / "k.key")]) == 2
    assert tree(tmp_path, lake_home) == before


def _failing_lock(*args: object, **kwargs: object) -> object:
    raise LockTimeoutError("another process holds the write lock")


def test_a_run_that_fails_before_committing_removes_the_lake_it_created(
    corpus: Path, tmp_path: Path, lake_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    before = tree(tmp_path, lake_home)
    monkeypatch.setattr("lake.ingest.run.write_lock", _failing_lock)
    new = tmp_path / "deep" / "new"
    assert main(ingest_args(corpus, new)) == 2  # the lake, its key folder and parents are made, then it fails
    assert "another process holds the write lock" in capsys.readouterr().err
    assert main([*ingest_args(corpus, new), "--key-file", str(tmp_path / "keys" / "k.key")]) == 2
    assert tree(tmp_path, lake_home) == before


def test_cleanup_never_removes_what_existed_before(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "lk"  # an existing folder with a file of the user's in it, and an existing key
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    key = tmp_path / "k.key"
    lake.init(tmp_path / "other", key_file=key)
    vault_runs = tmp_path / "k.key.vault" / "runs"
    vault_runs.mkdir(parents=True)
    before = tree(tmp_path)
    monkeypatch.setattr("lake.ingest.run.write_lock", _failing_lock)
    assert main([*ingest_args(corpus, folder), "--key-file", str(key)]) == 2
    assert tree(tmp_path) == before and (folder / "notes.txt").read_text() == "mine" and key.is_file()


def test_a_failed_run_into_an_existing_lake_removes_nothing(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lk = tmp_path / "lk"
    assert main(["init", str(lk)]) == 0
    before = tree(lk)
    monkeypatch.setattr("lake.ingest.run.write_lock", _failing_lock)
    assert main(ingest_args(corpus, lk)) == 2
    assert tree(lk) == before and LakePaths(lk).exists()


# -- empty sources ----------------------------------------------------------------------------------
def test_an_empty_source_says_nothing_was_found(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    (empty / "only" / "folders").mkdir(parents=True)
    lk = tmp_path / "lk"
    assert main(ingest_args(empty, lk)) == 0
    out, err = capsys.readouterr()
    assert f"no files found in {empty}" in err and "seen 0" in out
    assert main([*ingest_args(empty, lk), "--strict"]) == 1
    err = capsys.readouterr().err
    assert f"no files found in {empty}" in err and "--strict: 1 source(s) held no files" in err


# -- the lake, its key and vault inside a source are skipped ----------------------------------------
def test_a_source_holding_the_lake_key_and_vault_skips_them(corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lk, key = corpus / "lake", corpus / "secret" / "k.key"
    args = [*ingest_args(corpus, lk), "--key-file", str(key)]
    for run in range(2):
        assert main(args) == 0
        out, err = capsys.readouterr()
        assert f"skipped the lake's own folder {lk}" in err
        assert f"skipped the lake's key {key}" in err and "skipped the key's vault" in err
        expected = "ingested 4, duplicates 0" if run == 0 else "ingested 0, duplicates 4"
        assert f"seen 5, {expected}, rejected 1 " in out  # the lake's own files are not rejects
    assert main(["ingest", str(lk), "--lake", str(lk), "--key-file", str(key), "--no-progress"]) == 0
    out, err = capsys.readouterr()
    assert f"skipped the lake's own folder {lk}" in err and f"no files found in {lk}" in err and "seen 0" in out


def test_iter_sources_excludes_files_and_folders(tmp_path: Path) -> None:
    for name in ("a/1", "a/skip/2", "b", "secret"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "link").symlink_to(tmp_path / "secret")
    skipped: list[Path] = []
    items = iter_sources([tmp_path], exclude=[tmp_path / "a" / "skip", tmp_path / "secret"], on_skip=skipped.append)
    assert sorted(Path(i.label).relative_to(tmp_path).as_posix() for i in items) == ["a/1", "b"]
    assert sorted(skipped) == [tmp_path / "a" / "skip", tmp_path / "link", tmp_path / "secret"]


# -- what an ingest tells the user ------------------------------------------------------------------
def test_ingest_says_where_the_key_and_the_rejects_are_and_why_strict_fails(
    corpus: Path, tmp_path: Path, lake_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lk = tmp_path / "lk"
    assert main(ingest_args(corpus, lk)) == 0
    out, err = capsys.readouterr()
    key = lake.open(lk).key_path
    assert key.parent == lake_home / "keys"
    assert f"created lake {lk}; key: {key}" in err
    logs = list((lake_home / "keys" / f"{key.name}.vault" / "runs").glob("*.jsonl"))
    assert len(logs) == 1 and f"the rejected files are listed in {logs[0]}" in out
    rejected = [json.loads(line) for line in logs[0].read_text().splitlines()]
    assert [r["path"] for r in rejected if r["outcome"] == "rejected"] == [str(corpus / "README.dcm")]
    assert "rejected: not_dicom 1" in out
    # A rerun counts the earlier reject under its reason, and --strict says why it exits 1.
    assert main([*ingest_args(corpus, lk), "--strict"]) == 1
    out, err = capsys.readouterr()
    assert "created lake" not in err
    assert "rejected 1 " in out and "rejected: not_dicom 1" in out
    assert "--strict: 1 file(s) rejected" in err


def test_a_rerun_breakdown_adds_up(corpus: Path, tmp_path: Path) -> None:
    (corpus / "empty.dcm").write_bytes(b"")
    for _ in range(2):
        s = ingest(tmp_path / "lk", [corpus])
        assert s.rejected == 2 and sum(s.reject_reasons.values()) == s.rejected
        assert "" not in s.reject_reasons and "known" not in s.reject_reasons


# -- bad numbers, folders and files are refused while parsing ---------------------------------------
@pytest.mark.parametrize(
    "option,value,message",
    [
        ("--workers", "0", "must be at least 1"),
        ("--workers", "-2", "must be at least 1"),
        ("--workers", "two", "is not a whole number"),
        ("--batch-size", "0", "must be at least 1"),
        ("--file-timeout", "-1", "must be 0 or more"),
        ("--file-timeout", "nan", "must be 0 or more"),
        ("--worker-memory-mb", "-5", "must be 0 or more"),
        ("--recipe", "/does/not/exist.recipe", "does not exist"),
    ],
)
def test_ingest_refuses_bad_numbers_and_files(
    corpus: Path,
    tmp_path: Path,
    lake_home: Path,
    capsys: pytest.CaptureFixture[str],
    option: str,
    value: str,
    message: str,
) -> None:
    before = tree(tmp_path, lake_home)
    with pytest.raises(SystemExit) as exc:
        main([*ingest_args(corpus, tmp_path / "lk"), option, value])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}" in err and message in err
    assert tree(tmp_path, lake_home) == before


def test_zero_means_no_limit(corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def fake_ingest(*args: object, **kwargs: Any) -> object:
        seen.update(kwargs)
        raise LockTimeoutError("stop here")

    monkeypatch.setattr("lake.ingest.ingest", fake_ingest)  # imported when the command runs
    assert main([*ingest_args(corpus, tmp_path / "lk"), "--file-timeout", "0", "--worker-memory-mb", "0"]) == 2
    assert seen["file_timeout"] is None and seen["worker_memory_bytes"] is None


def test_a_key_file_that_is_a_folder_is_refused(
    corpus: Path, tmp_path: Path, lake_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "keys"
    folder.mkdir()
    before = tree(tmp_path, lake_home)
    assert main(["init", str(tmp_path / "lk"), "--key-file", str(folder)]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert main([*ingest_args(corpus, tmp_path / "lk"), "--key-file", str(folder)]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert tree(tmp_path, lake_home) == before


def test_the_python_api_refuses_bad_numbers(corpus: Path, tmp_path: Path) -> None:
    for kwargs in ({"workers": 0}, {"batch_size": 0}, {"file_timeout": -1.0}, {"worker_memory_bytes": 0}):
        with pytest.raises(ConfigError):
            ingest(tmp_path / "lk", [corpus], **kwargs)
    assert not (tmp_path / "lk").exists()


def test_other_commands_refuse_bad_numbers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["vacuum", "--lake", str(tmp_path), "--retention-hours", "-1"], ["demo", "--workers", "0"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2 and "must be" in capsys.readouterr().err


# -- every option is explained, with its default, in --help and in the README ----------------------
def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {"": parser, **sub.choices}


def test_every_option_has_a_help_sentence_and_its_default() -> None:
    for name, parser in _commands().items():
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            what = f"lake {name} {'/'.join(action.option_strings) or action.dest}"
            assert action.help and len(action.help.split()) >= 3, f"{what} has no help text"
            if action.option_strings and action.default not in (None, False, argparse.SUPPRESS):
                assert "default" in action.help, f"{what}: the help does not state the default {action.default!r}"


def test_the_readme_command_table_lists_every_option() -> None:
    text = README.read_text()
    table = text[text.index("| command | what it does |") :]
    table = table[: table.index("\n\n")]
    rows = {m.group(1): line for line in table.splitlines() if (m := re.match(r"\| `lake ([a-z-]+)", line))}
    paragraph = text[text.index(table) + len(table) :].split("\n\n")[1]
    commands = _commands()
    # -v/-q are accepted before or after the command: documented once, in the paragraph
    global_options = {o for a in commands[""]._actions for o in a.option_strings}
    for name, parser in commands.items():
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction) or not action.option_strings:
                continue
            is_global = name == "" or set(action.option_strings) <= global_options
            where = paragraph if is_global else rows.get(name, "")
            assert name == "" or name in rows, f"lake {name} is missing from the README's command table"
            assert any(re.search(rf"(?<![\w-]){re.escape(o)}(?![\w-])", where) for o in action.option_strings), (
                f"lake {name} {action.option_strings[-1]} is missing from the README's command table"
            )
