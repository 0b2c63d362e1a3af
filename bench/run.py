"""``python -m bench.run [--quick] [--only CASE ...] [--runs N]``: run the benchmark cases and write
``bench/results.json`` and ``bench/RESULTS.md`` (``make bench``). Scratch files go to ``bench/work/``.

A case that fails is reported as failed (with its error) and the others still run; the exit status is
non-zero when any case failed.
"""
import argparse
import importlib
import json
import os
import sys
import time
import traceback
from pathlib import Path

from .common import WORK, Settings, machine_info
from .report import measured_on, write_results

CASES = ("chips", "training", "inference", "quantised", "tiles", "quality", "sparse", "other_dates", "scaling",
         "pretrained", "distributed")
HERE = Path(__file__).resolve().parent


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny versions of every case, one run each (a smoke test, not a benchmark)")
    parser.add_argument("--only", nargs="+", choices=CASES, metavar="CASE",
                        help=f"run only these cases ({', '.join(CASES)})")
    parser.add_argument("--runs", type=int, help="runs per median (default 3, 1 with --quick)")
    parser.add_argument("--output", default=str(HERE), help="folder for results.json and RESULTS.md")
    parser.add_argument("--work", default=str(WORK), help="scratch folder")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    settings = Settings(quick=args.quick, runs=args.runs, work=Path(args.work))
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    json_path, md_path = output / "results.json", output / "RESULTS.md"
    results = {"machine": machine_info(), "quick": settings.quick, "runs": settings.runs, "seconds": 0.0,
               "cases": {}}
    if args.only and json_path.exists():  # keep the other cases' last results beside the re-run ones
        try:
            previous = json.loads(json_path.read_text(encoding="utf-8"))
            results["cases"] = {k: v for k, v in previous.get("cases", {}).items() if k not in args.only}
            for case in results["cases"].values():  # kept from an earlier run: say which (older files lack it)
                case.setdefault("measured", measured_on(previous.get("machine") or {}))
        except ValueError:
            pass
    started = time.perf_counter()
    failed = []
    for name in args.only or CASES:
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        tick, load = time.perf_counter(), round(os.getloadavg()[0], 2)
        try:
            case = importlib.import_module(f"bench.{name}").run(settings)
            case["status"] = "ok"
        except Exception as exc:  # noqa: BLE001 - one broken case must not hide the others' results
            traceback.print_exc()
            case = {"status": "failed", "error": f"{type(exc).__name__}: {exc}", "figures": []}
            failed.append(name)
        case["seconds"] = round(time.perf_counter() - tick, 1)
        case["measured"] = measured_on(results["machine"])
        case["load_average"] = [load, round(os.getloadavg()[0], 2)]
        results["cases"][name] = case
        results["cases"] = {k: results["cases"][k] for k in CASES if k in results["cases"]}
        results["seconds"] = time.perf_counter() - started
        results["load_average_end"] = round(os.getloadavg()[0], 2)
        write_results(results, json_path, md_path)  # after every case: a crash keeps what was measured
        print(f"[bench] {name}: {case['status']} in {case['seconds']:.0f} s", file=sys.stderr, flush=True)
    print(f"[bench] wrote {json_path} and {md_path} in {results['seconds'] / 60:.1f} min", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
