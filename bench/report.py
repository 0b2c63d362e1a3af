"""``bench/RESULTS.md``: the machine, then one table per case (medians, baselines, ratios, targets), then the last GPU
check (``bench/gpu_check.json``, measured on a GPU machine by ``make gpu-check``), if there is one."""
import json
from pathlib import Path

GPU_CHECK = Path(__file__).resolve().parent / "gpu_check.json"

TITLES = {"chips": "Chip export", "training": "Training", "inference": "Inference", "quality": "Quality",
          "scaling": "Scaling", "quantised": "Quantised models (int8)",
          "tiles": "Inference tiles independent of the training chips",
          "distributed": "Classify on a Dask cluster"}


def measured_on(machine: dict) -> dict:
    """When, where and at which commit a case ran: a case kept from an earlier ``--only`` run keeps its own."""
    return {k: machine.get(k) for k in ("date", "git_commit", "cpu")}


def write_results(results: dict, json_path, md_path) -> None:
    json_path.write_text(json.dumps(results, indent=1, default=str) + "\n", encoding="utf-8")
    md_path.write_text(markdown(results), encoding="utf-8")


def markdown(results: dict) -> str:
    m = results["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)
    lines = ["# Benchmark results", "",
             f"Written by `make bench` ({'`--quick`, ' if results.get('quick') else ''}"
             f"{results['runs']} runs per median) on {m['date']} in {results['seconds'] / 60:.1f} min, "
             f"commit {m.get('git_commit') or 'unknown'}.", "",
             f"- **CPU**: {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable); **RAM** {m['ram_gb']} GB",
             f"- **GPU**: {m['gpu']['summary']}",
             f"- **OS**: {m['os']}; Python {m['python']}; {versions}",
             f"- **Load average** (1 min) when the run started: {m.get('load_average')}, at its end: "
             f"{results.get('load_average_end')} (other work on the machine slows every figure)", "",
             "Each figure is the median of the runs listed. *Ratio* = our time / the baseline's time over the same "
             "work (above 1 = slower than the baseline); where the two ran in turn, round by round, it is the median "
             "of the rounds' ratios. For quality rows it is ours minus the baseline.", ""]
    misses = [(name, row) for name, case in results["cases"].items() for row in case.get("figures", [])
              if (row.get("target") or {}).get("met") is False]
    if misses:
        lines += ["**Targets missed**: " + "; ".join(
            f"{row['label']} ({row['target']['text']}: {row['target']['miss']})" for _, row in misses) + ".", ""]
    for name, case in results["cases"].items():
        lines += [f"## {TITLES.get(name, name)}", ""]
        if case.get("status") != "ok":
            lines += [f"**{case.get('status', 'not run')}**: {case.get('error', '')}", ""]
            if not case.get("figures"):
                continue
        took = f"Took {case['seconds']:.0f} s" if case.get("seconds") is not None else ""
        when = case.get("measured") or {}
        if when and when != measured_on(m):  # kept from an earlier --only run: its own machine and commit
            took += (f"; measured on {when.get('date')} at commit {when.get('git_commit') or 'unknown'}, "
                     f"{when.get('cpu')}, not in this run")
        if case.get("load_average"):
            took += f", load average {case['load_average'][0]} -> {case['load_average'][1]}"
        lines += [" ".join(filter(None, [case.get("what"), f"({took})." if took else ""])), ""]
        lines += ["| Figure | Median | Runs | Baseline | Ratio | Target | Result |",
                  "|---|---|---|---|---|---|---|"]
        lines += [_row(row) for row in case.get("figures", [])]
        lines.append("")
        for note in case.get("notes", []):
            lines.append(f"- {note}")
        if case.get("notes"):
            lines.append("")
        for title, rows in (case.get("profiles") or {}).items():
            lines += [f"Profile of {title} (cProfile, every thread; top by own time):", "",
                      "| Function | Calls | Own s | Cumulative s |", "|---|---|---|---|"]
            lines += [f"| `{r['function']}` | {r['calls']} | {r['own_s']} | {r['cumulative_s']} |" for r in rows]
            lines.append("")
    return "\n".join(lines + gpu_check_section())


def gpu_check_section(path=GPU_CHECK) -> list:
    """The GPU check's table as measured on a GPU machine (not by this run), or nothing."""
    if not path.is_file():
        return []
    from .gpu_check import table  # noqa: PLC0415 - torch, only when there is a check to show

    check = json.loads(path.read_text(encoding="utf-8"))
    return ["## GPU check", "",
            f"`make gpu-check` (`python -m bench.gpu_check`), run on a GPU machine, not by `make bench`; "
            f"kept in bench/{path.name}.", "", table(check["rows"], check["machine"], check["size"]),
            *[f"- {note}" for note in check.get("notes", [])], ""]


def _row(row: dict) -> str:
    value = "n/a" if row.get("value") is None else f"{_num(row['value'])} {row['unit']}".strip()
    runs = ", ".join(_num(r) for r in row["runs"]) if row.get("runs") else ""
    base = row.get("baseline")
    baseline = f"{_num(base['value'])} {base.get('unit', '')} ({base['label']})" if base else ""
    ratio = _num(row["ratio"]) if row.get("ratio") is not None else ""
    t = row.get("target") or {}
    result = ""
    if t:
        result = "met" if t.get("met") else ("**" + t.get("miss", "missed") + "**" if t.get("met") is False
                                             else t.get("miss", ""))
    label = row["label"] + (f" ({row['note']})" if row.get("note") else "")
    return f"| {label} | {value} | {runs} | {baseline} | {ratio} | {t.get('text', '')} | {result} |"


def _num(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:.0f}"
        return f"{value:.3g}"
    return str(value)
