"""Outputs written as one set: staged, published in one step with a manifest, locked against
a concurrent run, never mixed; killed runs, full disks and interrupts leave the old set or the
new one, and the next run removes what they left (issue 10, section 5)."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mfr_analysis import io
from mfr_analysis import pipeline as pipeline_module
from mfr_analysis.config import CLEANING_REPORT_FILE, QUARANTINE_FILE, SESSIONS_FILE
from mfr_analysis.errors import InputError
from mfr_analysis.pipeline import clean_parquets, load_sessions, run_clean
from tests.conftest import TEST_KEY

FIXTURES = Path(__file__).parent / "fixtures"
MESSY = FIXTURES / "messy_sessions.csv"
SET = (SESSIONS_FILE, QUARANTINE_FILE, CLEANING_REPORT_FILE)
MANIFEST = "manifest.json"


@pytest.fixture(scope="module")
def second_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another small log whose clean outputs differ from the fixture's in every file."""
    path = tmp_path_factory.mktemp("second") / "second.csv"
    path.write_text("Client,Date,Group,Pain before,Pain after\n"
                    "Q-1,2024-03-08,athlete,6,3\nQ-2,2024-03-09,senior,5,4\n"
                    "Q-3,2024-03-10,rehab,seven,2\nQ-4,2024-03-11,x-ray,5,5\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def old_and_new(second_log: Path, tmp_path_factory: pytest.TempPathFactory
                ) -> tuple[Path, Path]:
    """Two reference output sets: the 'old' one (the fixture) and the 'new' one."""
    root = tmp_path_factory.mktemp("references")
    with pytest.MonkeyPatch.context() as patch:  # module scope: the autouse key is not set yet
        patch.setenv("MFR_PSEUDONYM_KEY", TEST_KEY)
        run_clean([MESSY], root / "old", progress=False)
        run_clean([second_log], root / "new", progress=False)
    return root / "old", root / "new"


def _contents(out: Path) -> dict[str, bytes]:
    return {name: (out / name).read_bytes() for name in SET}


def _which(out: Path, old: Path, new: Path) -> str:
    """'old' or 'new' if the folder holds exactly one of the reference sets, else 'mixed'."""
    found = _contents(out)
    for label, reference in (("old", old), ("new", new)):
        if found == _contents(reference):
            return label
    return "mixed"


def _leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.name not in (*SET, MANIFEST))


# ---------------------------------------------------------------------------------------------
# the manifest and the readers


def test_clean_publishes_a_manifest_with_every_checksum(tmp_path: Path) -> None:
    run_clean([MESSY], tmp_path, progress=False)
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    assert manifest["kind"] == "clean" and manifest["run_id"] and manifest["package_version"]
    assert set(manifest["files"]) == set(SET)
    for name, entry in manifest["files"].items():
        data = (tmp_path / name).read_bytes()
        assert entry["size"] == len(data)
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert io.verify_output_set(tmp_path, "clean")["run_id"] == manifest["run_id"]
    assert _leftovers(tmp_path) == []  # no lock file, no staging folder


def test_a_new_parquet_beside_an_old_report_is_refused_by_every_reader(
        old_and_new: tuple[Path, Path], tmp_path: Path) -> None:
    """The issue's case: a new sessions.parquet beside an old cleaning_report.json."""
    from mfr_analysis.report.run import ReportOptions, _prepare_sessions

    old, new = old_and_new
    shutil.copytree(old, tmp_path / "out")
    shutil.copy(new / SESSIONS_FILE, tmp_path / "out" / SESSIONS_FILE)
    says = r"sessions\.parquet does not match manifest\.json .*mixed or partly written"
    with pytest.raises(InputError, match=says):
        load_sessions(tmp_path / "out")
    with pytest.raises(InputError, match=says):
        load_sessions([tmp_path / "out" / SESSIONS_FILE])
    with pytest.raises(InputError, match=says):
        clean_parquets(tmp_path / "out")
    with pytest.raises(InputError, match=says):
        _prepare_sessions([tmp_path / "out"], tmp_path / "report" / "data", ReportOptions(),
                          False)
    (tmp_path / "out" / QUARANTINE_FILE).unlink()  # a file of the set missing
    shutil.copy(old / SESSIONS_FILE, tmp_path / "out" / SESSIONS_FILE)
    with pytest.raises(InputError, match=r"quarantine\.csv is missing from manifest\.json"):
        load_sessions(tmp_path / "out")


def test_a_changed_file_of_the_same_size_is_found_by_its_checksum(tmp_path: Path) -> None:
    run_clean([MESSY], tmp_path, progress=False)
    path = tmp_path / CLEANING_REPORT_FILE
    text = path.read_text()
    path.write_text(text.replace('"rows_in": 29', '"rows_in": 92'))
    with pytest.raises(InputError, match="cleaning_report.json does not match"):
        io.verify_output_set(tmp_path)
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    stamp = manifest["files"][CLEANING_REPORT_FILE]["mtime_ns"]
    os.utime(path, ns=(stamp, stamp))  # even with the recorded mtime, deep=True finds it
    with pytest.raises(InputError, match="cleaning_report.json does not match"):
        io.verify_output_set(tmp_path, deep=True)


def test_a_folder_without_manifest_is_accepted_with_a_warning_unless_its_counts_differ(
        old_and_new: tuple[Path, Path], tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    old, new = old_and_new
    legacy = tmp_path / "legacy"
    shutil.copytree(old, legacy)
    (legacy / MANIFEST).unlink()  # as an older version wrote it
    with caplog.at_level("WARNING"):
        assert clean_parquets(legacy) == [legacy / SESSIONS_FILE]  # as claims and report check
        assert len(load_sessions(legacy)) == 6
    assert [r.message.count("no manifest.json") for r in caplog.records] == [1]
    shutil.copy(new / SESSIONS_FILE, legacy / SESSIONS_FILE)  # 3 rows; the report says 6
    with pytest.raises(InputError, match=r"does not match cleaning_report\.json \(3 rows"):
        load_sessions(legacy)
    lone = tmp_path / "lone" / "site-a.parquet"  # a table copied away from its folder
    lone.parent.mkdir()
    shutil.copy(old / SESSIONS_FILE, lone)
    assert len(load_sessions([lone])) == 6


# ---------------------------------------------------------------------------------------------
# the lock


def _hold_lock(folder: Path) -> subprocess.Popen[str]:
    """Another process holding the folder's lock (plain flock: what a running clean holds)."""
    script = textwrap.dedent(f"""
        import fcntl, os, sys, time
        fd = os.open({str(folder / io.LOCK_FILE)!r}, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        print("locked", flush=True)
        time.sleep(120)
    """)
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    return holder


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mfr_analysis.cli", *args],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "MFR_PSEUDONYM_KEY": TEST_KEY})


def test_a_second_clean_on_the_same_folder_fails_in_one_line(
        old_and_new: tuple[Path, Path], second_log: Path, tmp_path: Path) -> None:
    old, new = old_and_new
    out = tmp_path / "out"
    shutil.copytree(old, out)
    holder = _hold_lock(out)
    try:
        second = _cli("clean", str(second_log), "--out", str(out), "--no-progress")
    finally:
        holder.kill()  # kill -9: the OS releases the lock
        holder.wait()
    assert second.returncode != 0
    lines = [line for line in second.stderr.splitlines() if line.strip()]
    assert lines == [f"mfr-analysis: error: {out}: another mfr-analysis run is writing here; "
                     "wait for it to finish or choose another --out"]
    assert _which(out, old, new) == "old"
    third = _cli("clean", str(second_log), "--out", str(out), "--no-progress")
    assert third.returncode == 0, third.stderr  # no stale lock after kill -9
    assert _which(out, old, new) == "new" and _leftovers(out) == []


def test_the_lock_is_exclusive_in_one_process_too(tmp_path: Path) -> None:
    with io.lock_output(tmp_path), pytest.raises(InputError, match="another mfr-analysis run"):
        run_clean([MESSY], tmp_path, progress=False)
    run_clean([MESSY], tmp_path, progress=False)  # released
    with io.lock_output(tmp_path):
        fd = os.open(tmp_path / io.LOCK_FILE, os.O_RDWR)
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.close(fd)


# ---------------------------------------------------------------------------------------------
# killed, full, interrupted: the old set or the new one, never a mix; leftovers removed

_KILLER = textwrap.dedent("""
    import os, signal, sys
    from mfr_analysis import io, pipeline

    log, out, stage = sys.argv[1], sys.argv[2], sys.argv[3]

    def die(*_args, **_kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    if stage == "writing":  # while the set is being written into its staging folder
        pipeline.write_csv = die
    elif stage == "cleanup":  # published, its staging folder not yet removed
        real_rmtree = io.shutil.rmtree
        def rmtree(path, *args, **kwargs):
            if os.path.basename(str(path)).startswith(io.STAGING_PREFIX):
                die()
            real_rmtree(path, *args, **kwargs)
        io.shutil.rmtree = rmtree
    else:  # before the n-th rename of the publish
        calls, real_rename = [0], io._rename
        def rename(source, target):
            calls[0] += 1
            if calls[0] == int(stage):
                die()
            real_rename(source, target)
        io._rename = rename
    pipeline.run_clean([log], out, progress=False)
""")
# renames of a publish over an old set of three files: the ready manifest, each of the three
# set aside and moved in, the manifest published
_STAGES = ["writing", *map(str, range(1, 9)), "cleanup"]


@pytest.mark.parametrize("stage", _STAGES)
def test_kill_9_at_every_stage_leaves_old_or_new(stage: str, old_and_new: tuple[Path, Path],
                                                 second_log: Path, tmp_path: Path) -> None:
    old, new = old_and_new
    out = tmp_path / "out"
    shutil.copytree(old, out)
    killed = subprocess.run([sys.executable, "-c", _KILLER, str(second_log), str(out), stage],
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, "MFR_PSEUDONYM_KEY": TEST_KEY})
    assert killed.returncode == -9, killed.stderr
    io.verify_output_set(out)  # a reader finishes a publish that was ready, else refuses
    state = _which(out, old, new)
    assert state == ("old" if stage in ("writing", "1") else "new")
    assert len(load_sessions(out)) == (6 if state == "old" else 3)
    run_clean([second_log], out, progress=False)  # the next run removes what was left
    assert _which(out, old, new) == "new" and _leftovers(out) == []


def test_a_killed_publish_is_finished_by_the_next_run(old_and_new: tuple[Path, Path],
                                                      second_log: Path, tmp_path: Path) -> None:
    """Killed half-way through moving (the parquet new, the rest old), nobody reads the
    folder: the next clean finishes that publish before it starts its own work."""
    old, new = old_and_new
    out = tmp_path / "out"
    shutil.copytree(old, out)
    killed = subprocess.run([sys.executable, "-c", _KILLER, str(second_log), str(out), "4"],
                            capture_output=True, timeout=120,
                            env={**os.environ, "MFR_PSEUDONYM_KEY": TEST_KEY})
    assert killed.returncode == -9
    assert _which(out, old, new) == "mixed"  # as the kill left it, before anyone reads
    # a reader that may not finish it (another run holds the lock) refuses it
    with pytest.raises(InputError, match="another mfr-analysis run"), io.lock_output(out):
        io.verify_output_set(out)
    run_clean([MESSY], out, progress=False)
    assert _which(out, old, new) == "old" and _leftovers(out) == []


@pytest.mark.parametrize("where", ["staging", "sessions", "manifest"])
def test_a_full_disk_leaves_the_old_set(where: str, old_and_new: tuple[Path, Path],
                                        second_log: Path, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    old, new = old_and_new
    out = tmp_path / "out"
    shutil.copytree(old, out)

    def full(*_args: object, **_kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    if where == "staging":
        monkeypatch.setattr(pipeline_module, "write_csv", full)
    elif where == "sessions":  # the clean table's third slice: written in the background
        from mfr_analysis import clean

        monkeypatch.setattr(clean, "ROWS_PER_SLICE", 1)
        opened = pipeline_module.parquet_writer

        def filling(*args: object, **kwargs: object) -> object:
            writer, written = opened(*args, **kwargs), [0]
            write = writer.write_table

            def write_table(table: object) -> None:
                written[0] += 1
                if written[0] == 3:
                    full()
                write(table)
            writer.write_table = write_table
            return writer

        monkeypatch.setattr(pipeline_module, "parquet_writer", filling)
    else:
        monkeypatch.setattr(io, "_write_ready", full)
    with pytest.raises(OSError, match="No space left"):
        run_clean([second_log], out, progress=False)
    assert _which(out, old, new) == "old" and _leftovers(out) == []
    io.verify_output_set(out)


def test_ctrl_c_leaves_the_old_set(old_and_new: tuple[Path, Path], second_log: Path,
                                   tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old, new = old_and_new
    out = tmp_path / "out"
    shutil.copytree(old, out)

    def interrupted(*_args: object, **_kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline_module, "write_json", interrupted)  # the last file written
    with pytest.raises(KeyboardInterrupt):
        run_clean([second_log], out, progress=False)
    assert _which(out, old, new) == "old" and _leftovers(out) == []


@pytest.mark.parametrize("failing", [2, 4, 7])
def test_a_failed_move_puts_the_old_set_back(failing: int, old_and_new: tuple[Path, Path],
                                             second_log: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    old, new = old_and_new
    out = tmp_path / "out"
    shutil.copytree(old, out)
    calls, real = [0], io._rename

    def rename(source: Path, target: Path) -> None:
        calls[0] += 1
        if calls[0] == failing:
            raise OSError(errno.EIO, "Input/output error")
        real(source, target)

    monkeypatch.setattr(io, "_rename", rename)
    with pytest.raises(OSError, match="Input/output error"):
        run_clean([second_log], out, progress=False)
    assert _which(out, old, new) == "old" and _leftovers(out) == []
    io.verify_output_set(out)


def test_leftovers_of_killed_runs_are_removed(tmp_path: Path) -> None:
    run_clean([MESSY], tmp_path, progress=False)
    dask = tmp_path / ".mfr-dask-k2j4h1x0"  # the Dask engine's staging (18-65 MB in the issue)
    dask.mkdir()
    (dask / "sessions-000000000000w.parquet").write_bytes(b"\0" * (1 << 20))
    (tmp_path / ".mfr-staging-20250101T000000Z-deadbeef").mkdir()  # never became ready
    (tmp_path / ".sessions.parquet.ab12cd_4").write_bytes(b"half")  # older versions' temporary
    (tmp_path / ".quarantine.csv.old-zz9a8b7c").mkdir()
    (tmp_path / ".mfr-tmp-cleaning_report.json.x1y2z3w4").write_text("{")
    (tmp_path / ".notes.txt").write_text("mine")  # not ours: stays
    (tmp_path / "notes.txt").write_text("mine")
    run_clean([MESSY], tmp_path, progress=False)
    assert _leftovers(tmp_path) == [".notes.txt", "notes.txt"]


# ---------------------------------------------------------------------------------------------
# output_set as other commands use it: nested folders, a sub-set, stale files


def test_nested_sets_and_stale_files(tmp_path: Path) -> None:
    out = tmp_path / "report"
    with io.output_set(out, kind="report") as staged:
        (staged.dir / "index.html").write_text("one")
        (staged.dir / "claims-x.html").write_text("x")
        (staged.dir / "notebooks").mkdir()
        (staged.dir / "notebooks" / "claims-x.ipynb").write_text("{}")
        run_clean([MESSY], staged.dir / "data", progress=False)  # a clean set inside
    assert io.verify_output_set(out, "report")["kind"] == "report"
    assert io.verify_output_set(out / "data", "clean")
    assert len(load_sessions(out / "data")) == 6
    (out / "mine.txt").write_text("a user's file")
    with io.output_set(out, kind="report") as staged:  # a run that writes no slice x
        (staged.dir / "index.html").write_text("two")
        (staged.dir / "notebooks").mkdir()
        (staged.dir / "notebooks" / "claims-all.ipynb").write_text("{}")
    assert sorted(p.name for p in out.iterdir()) == ["index.html", "manifest.json", "mine.txt",
                                                      "notebooks"]
    assert [p.name for p in (out / "notebooks").iterdir()] == ["claims-all.ipynb"]
    assert set(io.verify_output_set(out)["files"]) == {"index.html",
                                                       "notebooks/claims-all.ipynb"}


def test_a_folder_with_files_no_run_wrote_is_not_replaced(tmp_path: Path) -> None:
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "my-analysis.ipynb").write_text("{}")
    with pytest.raises(InputError, match=r"notebooks: a folder holding my-analysis\.ipynb"), \
            io.output_set(tmp_path, kind="report") as staged:
        (staged.dir / "notebooks").mkdir()
        (staged.dir / "notebooks" / "claims-all.ipynb").write_text("{}")
    assert [p.name for p in (tmp_path / "notebooks").iterdir()] == ["my-analysis.ipynb"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notebooks"]


# ---------------------------------------------------------------------------------------------
# an output that is an input


def test_claims_out_onto_its_own_input_is_refused(old_and_new: tuple[Path, Path],
                                                  tmp_path: Path) -> None:
    old, _ = old_and_new
    clean = tmp_path / "clean"
    shutil.copytree(old, clean)
    before = _contents(clean)
    for given, out in [(clean, clean / SESSIONS_FILE),  # as the issue found it
                       (clean / SESSIONS_FILE, clean / CLEANING_REPORT_FILE)]:
        result = _cli("claims", str(given), "--out", str(out), "--no-progress")
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode != 0 and len(lines) == 1, result.stderr
        assert "would overwrite an input of this run" in lines[0]
    for given, out in [(clean / SESSIONS_FILE, clean / SESSIONS_FILE), (clean, clean / MANIFEST),
                       (clean, clean / QUARANTINE_FILE)]:
        with pytest.raises(InputError, match="would overwrite an input of this run"):
            io.refuse_output_over_inputs([out], pipeline_module.input_files([given]))
    io.refuse_output_over_inputs([clean / "claims.json"], pipeline_module.input_files([clean]))
    assert _contents(clean) == before
    io.verify_output_set(clean)
    raw = tmp_path / "logs.csv"
    shutil.copy(MESSY, raw)
    with pytest.raises(InputError, match="would overwrite an input"):
        io.refuse_output_over_inputs([raw], pipeline_module.input_files([raw]))


def test_clean_out_over_an_input_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_clean([MESSY], out, progress=False)
    linked = tmp_path / "linked.csv"  # a raw input that is, in fact, the old quarantine file
    linked.symlink_to(out / QUARANTINE_FILE)
    before = _contents(out)
    with pytest.raises(InputError, match=r"quarantine\.csv: --out would overwrite an input"):
        run_clean([MESSY, linked], out, progress=False)
    assert _contents(out) == before
    with pytest.raises(InputError, match="not a folder"):
        run_clean([MESSY], MESSY, progress=False)


def test_a_clean_into_a_report_folder_is_refused(tmp_path: Path) -> None:
    with io.output_set(tmp_path, kind="report") as staged:
        (staged.dir / "index.html").write_text("report")
    with pytest.raises(InputError, match=r"holds the outputs of `mfr-analysis report`"):
        run_clean([MESSY], tmp_path, progress=False)
    assert (tmp_path / "index.html").read_text() == "report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.html", MANIFEST]


def test_a_killed_dask_clean_leaves_the_old_set_and_its_staging_is_removed(
        old_and_new: tuple[Path, Path], second_log: Path, tmp_path: Path) -> None:
    """kill -9 of the Dask engine once its partitions are staged (an in-process cluster)."""
    old, new = old_and_new
    out = tmp_path / "out"
    shutil.copytree(old, out)
    script = textwrap.dedent("""
        import os, signal, sys
        from mfr_analysis import dask_clean
        def die(*_args, **_kwargs):
            os.kill(os.getpid(), signal.SIGKILL)
        dask_clean._across_partitions = die
        real_cluster = dask_clean.local_cluster
        dask_clean.local_cluster = lambda n=None, **_: real_cluster(n, processes=False)
        dask_clean.run_clean_dask([sys.argv[1], sys.argv[2]], sys.argv[3], n_workers=1,
                                  progress=False, blocksize=100)
    """)
    killed = subprocess.run([sys.executable, "-c", script, str(MESSY), str(second_log),
                             str(out)], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "MFR_PSEUDONYM_KEY": TEST_KEY})
    assert killed.returncode == -9, killed.stderr
    staged = [p for p in out.rglob("sessions-*.parquet") if ".mfr-dask-" in str(p)]
    assert staged  # what the killed run left: its partitions, inside its staging folder
    assert _which(out, old, new) == "old"
    io.verify_output_set(out)
    run_clean([second_log], out, progress=False)
    assert _which(out, old, new) == "new" and _leftovers(out) == []
