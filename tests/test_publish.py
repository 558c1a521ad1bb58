"""The top level of a results folder shows one run (ibtpo/publish.py), and a plan is told from a run by
snakemake's own command line (ibtpo/dag_mode.py)."""

from pathlib import Path

from ibtpo.dag_mode import plans_only
from ibtpo.publish import clear_stale, publish, rebase_links, stale


def test_rebase_links_names_the_same_files_from_the_top_level():
    text = ("[t](table1.md), ![f](figures/a.png), [up](../x.md#sec), [web](https://e.org/a), [a](#here), "
            "[abs](/tmp/z.png), [d](mailto:a@b)")
    got = rebase_links(text, Path("results/tiny"), Path("results"))
    assert got == ("[t](tiny/table1.md), ![f](tiny/figures/a.png), [up](x.md#sec), [web](https://e.org/a), "
                   "[a](#here), [abs](/tmp/z.png), [d](mailto:a@b)")
    assert rebase_links(text, Path("r"), Path("r")) == text  # publishing in place changes nothing


def _preset(rd: Path, preset: str, names=("table1.csv", "table1.md", "claims.md")) -> Path:
    r = rd / preset
    r.mkdir(parents=True)
    for n in names:
        (r / n).write_text(f"{preset} {n} [fig](figures/x.png)\n")
    return r


def test_another_presets_and_another_configs_files_leave_the_top_level(tmp_path):
    rd = tmp_path / "results"
    tiny, smoke = _preset(rd, "tiny"), _preset(rd, "smoke")
    for n in ("table1.csv", "table1.md", "claims.md"):
        publish(tiny / n, rd / n)
    assert (rd / "claims.md").read_text() == "tiny claims.md [fig](tiny/figures/x.png)\n"
    assert stale(rd, tiny, ["table1", "claims"]) == []  # tiny's own copies, all made by its config
    # evaluate-only tiny makes Table 1 alone: its claims go (a copy: deleted, tiny's own file kept)
    assert stale(rd, tiny, ["table1"]) == [rd / "claims.md"]
    # smoke's run: all of tiny's copies go; a hand-edited top-level file moves to superseded/ instead
    (rd / "table1.csv").write_text("edited by hand\n")
    lines = []
    gone = clear_stale(rd, smoke, ["table1", "claims"], log=lines.append)
    assert sorted(p.name for p in gone) == ["claims.md", "table1.csv", "table1.md"]
    assert not any((rd / n).exists() for n in ("claims.md", "table1.csv", "table1.md"))
    assert (rd / "superseded" / "table1.csv").read_text() == "edited by hand\n"
    assert (tiny / "claims.md").exists() and (tiny / "table1.csv").exists()  # nothing lost
    assert len(lines) == 3 and "results/tiny/claims.md (kept there)" in " ".join(lines)
    assert "superseded" in " ".join(lines)
    (rd / "table1.csv").write_text("edited again\n")  # a second one keeps the first
    clear_stale(rd, smoke, ["table1"], log=lines.append)
    assert (rd / "superseded" / "table1.csv").read_text() == "edited by hand\n"
    assert (rd / "superseded" / "table1.1.csv").read_text() == "edited again\n"


def test_a_plan_is_told_from_a_run_by_snakemakes_command_line():
    sm = "/venv/lib/python3.11/site-packages/snakemake/__main__.py"
    for argv in (["-n"], ["-np", "--cores", "2"], ["--dry-run"], ["--dag"], ["--summary"], ["--report", "r.html"],
                 ["--report"], ["--list-rules"], ["--executor", "dryrun"], ["--lint"]):
        assert plans_only([sm, "results/table1.csv", *argv]), argv
    assert plans_only([sm, "--touch"])  # marks outputs up to date: runs no job, so writes and removes nothing
    for argv in ([], ["--cores", "2", "results/table1.csv"], ["--profile", "pipelines/profiles/local"],
                 ["--config", "preset=smoke", "--forceall"], ["-c1", "--report-after-run", "--report", "r.html"]):
        assert not plans_only([sm, *argv]), argv
    assert not plans_only(["pytest", "-q", "tests"])  # not snakemake's: counts as a run, prints no usage


def test_the_publish_job_copies_and_rebases(tmp_path):
    """``python -m ibtpo publish`` (what the DAG's publish rules run): each --src to its --dst, links rebased."""
    import subprocess
    import sys

    r = _preset(tmp_path / "results", "tiny")
    srcs = [str(r / n) for n in ("table1.csv", "claims.md")]
    dsts = [str(tmp_path / "results" / n) for n in ("table1.csv", "claims.md")]
    out = subprocess.run([sys.executable, "-m", "ibtpo", "publish", "--src", *srcs, "--dst", *dsts],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "results" / "table1.csv").read_text() == (r / "table1.csv").read_text()
    assert "[fig](tiny/figures/x.png)" in (tmp_path / "results" / "claims.md").read_text()
    bad = subprocess.run([sys.executable, "-m", "ibtpo", "publish", "--src", *srcs, "--dst", dsts[0]],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "2 --src files but 1 --dst files" in bad.stderr
