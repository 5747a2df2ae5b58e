"""Command line: ``python -m benchmark`` (or ``dipbench``).

    run         run (or resume) a profile, or any selection of methods × tasks × datasets
    plan        a profile's cells and estimated cost here and on a GPU, running nothing
    tune        choose tunable hyperparameters on validation images from the training split
    list        list registered methods, tasks, datasets and profiles
    report      rebuild the HTML/Markdown/LaTeX report from a results store
    export      write the results as long tables (CSV or Parquet) for pandas
    docs        write the documentation site's reference pages from the registries
    leaderboard serve the MLflow UI on 127.0.0.1 over the same store

User errors print one line naming the problem and the valid choices, and exit with status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from benchmark.core.errors import UserError, one_line

if TYPE_CHECKING:
    from benchmark.run.profiles import DatasetSpec, Profile
    from benchmark.run.runner import Summary


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _seeds(value: str) -> list[int]:
    try:
        return [int(s) for s in _csv(value)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {value!r}") from None


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line, exit status 2, like every other user error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dipbench", description="DIP vs data-driven image reconstruction benchmark")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run or resume a benchmark profile")
    run.add_argument("--profile", default="quick", help="profile name or YAML path (default: quick)")
    run.add_argument("--methods",
                     help="comma-separated methods, each optionally with a parameter grid, e.g. "
                          "'tv,dip[iterations=500,2000]' (default: the profile's)")
    run.add_argument("--set", dest="settings", action="append", default=[], metavar="METHOD.PARAM=VALUE",
                     help="override a parameter of every instance of a method, e.g. dip.iterations=500 "
                          "(several values sweep it: dip.iterations=500,2000); repeatable")
    run.add_argument("--budget", help="the methods' budget: an entry of their budgets (test, quick, cpu, ...) or "
                     "paper, their defaults (default: the profile's)")
    run.add_argument("--tasks", type=_csv, help="comma-separated tasks")
    run.add_argument("--datasets", type=_csv, help="comma-separated datasets or folders of images, e.g. ./my_images "
                     "(profile crop/limit kept when listed)")
    run.add_argument("--seeds", type=_seeds, help="comma-separated seeds")
    run.add_argument("--limit", type=int, help="at most N images per dataset")
    run.add_argument("--batch-size", help="problems a method may solve at once (DIP: B networks per step; "
                     "1: one by one; auto: the fastest measured per image; default: the profile's)")
    run.add_argument("--results", type=Path, help="results folder (default: results/<profile>)")
    run.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlruns.db)")
    run.add_argument("--executor", choices=["local", "ray"], default="local")
    run.add_argument("--address", help="Ray cluster address (with --executor ray)")
    run.add_argument("--strict", action="store_true", help="exit 1 when any cell failed")
    run.add_argument("--no-report", action="store_true", help="skip the HTML report")
    run.add_argument("--no-progress", action="store_true", help="hide progress bars")

    tune = sub.add_parser("tune", help="choose tunable hyperparameters on validation images from the training split")
    tune.add_argument("--profile", default="quick", help="profile name or YAML path (default: quick)")
    tune.add_argument("--methods", type=_csv, help="comma-separated methods (default: the profile's tune.methods)")
    tune.add_argument("--tasks", type=_csv, help="comma-separated tasks (default: the profile's)")
    tune.add_argument("--out", type=Path, help="tuned-values file (default: the one the profile names)")
    tune.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlruns.db)")
    tune.add_argument("--device", help="device (default: the profile's)")

    planned = sub.add_parser("plan", help="a profile's cells and estimated cost here and on a GPU, running nothing")
    planned.add_argument("--profile", default="quick", help="profile name or YAML path (default: quick)")
    planned.add_argument("--methods", help="comma-separated methods (default: the profile's)")
    planned.add_argument("--tasks", type=_csv, help="comma-separated tasks")
    planned.add_argument("--groups", action="store_true", help="one line per (method, task, dataset, image size)")

    lst = sub.add_parser("list", help="list what is registered")
    lst.add_argument("what", nargs="?", choices=["methods", "tasks", "datasets", "profiles", "all"], default="all")

    rep = sub.add_parser("report", help="rebuild the report from a results store")
    rep.add_argument("--profile", default="quick")
    rep.add_argument("--results", type=Path)
    rep.add_argument("--docs", type=Path, nargs="?", const=Path("docs"), default=None, metavar="DOCS",
                     help="also write the documentation site's results page for this profile under "
                          "DOCS/results/<profile>/ (default folder: docs)")

    site = sub.add_parser("docs", help="write the documentation site's reference pages from the registries")
    site.add_argument("--out", type=Path, default=Path("docs"), help="the docs folder (default: docs)")

    exp = sub.add_parser("export", help="write the results as long tables (CSV or Parquet) for pandas")
    exp.add_argument("--format", choices=["csv", "parquet"], default="csv")
    exp.add_argument("--profile", default="quick", help="whose results folder to export (default: quick)")
    exp.add_argument("--results", type=Path, help="results folder (default: results/<profile>)")
    exp.add_argument("--out", type=Path, required=True, help="folder for results.<format> and curves.<format>")

    board = sub.add_parser("leaderboard", help="print one ranked MLflow page per task and serve the MLflow UI")
    board.add_argument("--profile", help="rank the latest run of this profile (default: the latest run)")
    board.add_argument("--host", default="127.0.0.1")
    board.add_argument("--port", type=int, default=int(os.environ.get("DIPBENCH_PORT", "5000")))
    board.add_argument("--tracking-uri")
    board.add_argument("--no-browser", action="store_true", help="print the URLs, do not open them")
    board.add_argument("--no-serve", action="store_true", help="print the URLs and exit (a server runs already)")
    return parser


def _integer(text: str) -> object:
    try:
        return int(text)
    except ValueError:
        return text


def _dataset(name: str, template: DatasetSpec) -> DatasetSpec:
    """A ``--datasets`` entry: a registered name (cropped and limited like the profile's first
    dataset), or a folder of images (a path, or an existing folder that is no registered name),
    resized and cropped like the profile's first dataset but with all its images (only
    ``--limit`` limits them): a photo is brought to the profile's image size, not cut to a patch."""
    from benchmark.problems import data
    from benchmark.run import profiles

    is_folder = name not in data.available() and (any(sep in name for sep in "/\\") or name.startswith((".", "~"))
                                                   or Path(name).is_dir())
    if not is_folder:
        return profiles.DatasetSpec(name, crop=template.crop, limit=template.limit)
    folder = str(Path(name).expanduser())
    return profiles.dataset_entry(f"--datasets {name}", {"path": folder, "crop": template.crop,
                                                         "resize": template.resize})


def _select(profile: Profile, args: argparse.Namespace) -> Profile:
    from benchmark.run import grid, profiles

    changes: dict[str, Any] = {}
    if args.methods:
        # commas inside a grid's brackets belong to the grid
        specs = grid.split_top_level(args.methods)
        for spec in specs:
            grid.parse_spec(spec)
        changes["methods"] = specs
    if args.budget:
        changes["budget"] = args.budget
    settings: dict[str, dict[str, list[object]]] = {}
    for text in args.settings:
        method, key, values = grid.parse_setting(text)
        settings.setdefault(method, {})[key] = values
    changes["settings"] = settings
    if args.tasks:
        changes["tasks"] = args.tasks
    if args.seeds is not None:
        changes["seeds"] = profiles.check_seeds("--seeds", args.seeds)
    if args.batch_size is not None:
        value = args.batch_size if args.batch_size == "auto" else _integer(args.batch_size)
        changes["batch_size"] = profiles.batch_size("--batch-size", value)
    datasets = profile.datasets
    if args.datasets:
        known = {d.name: d for d in profile.datasets}
        template = profile.datasets[0] if profile.datasets else profiles.DatasetSpec("embedded")
        datasets = [known.get(n) or _dataset(n, template) for n in args.datasets]
    if args.tasks:
        # a dataset entry that lists its tasks keeps the selected ones; none selected: left out
        datasets = [d if d.tasks is None else dataclasses.replace(d, tasks=[t for t in d.tasks if t in args.tasks])
                    for d in datasets]
        datasets = [d for d in datasets if d.tasks is None or d.tasks]
    if args.limit is not None:
        limit = profiles.positive("--limit", args.limit)
        datasets = [dataclasses.replace(d, limit=limit) for d in datasets]
    changes["datasets"] = datasets
    return dataclasses.replace(profile, **changes)


def report_builder(profile: Profile) -> Callable[[Any, Path], Path]:
    """What the CLI makes of a profile's results: the report (HTML, Markdown, LaTeX) in
    ``<results>/report``, with the profile's tune records and untuned tunables."""
    from benchmark.results import reporting
    from benchmark.run import tuning

    reports = reporting.load()

    def build(frame: Any, results_dir: Path) -> Path:
        return reports.build_report(frame, Path(results_dir) / "report", title=f"dipbench · {profile.name}",
                                    recon_root=Path(results_dir) / "recons", tuning=tuning.report_rows(profile))

    return build


def cmd_run(args: argparse.Namespace) -> int:
    from benchmark.run import profiles, runner

    profile = _select(profiles.load(args.profile), args)
    executor = None
    if args.executor == "ray":
        from benchmark.run.ray_executor import RayExecutor

        executor = RayExecutor(address=args.address)
    try:
        summary = runner.run_benchmark(profile, results_dir=args.results, tracking_uri=args.tracking_uri,
                                       executor=executor, strict=args.strict, progress=not args.no_progress,
                                       report=None if args.no_report else report_builder(profile))
    except runner.BenchmarkFailed as exc:
        _print_summary(exc.summary)
        print(f"error: {exc} (--strict)", file=sys.stderr)
        return 1
    finally:
        if executor is not None:
            executor.shutdown()
    _print_summary(summary)
    return 0


def _print_summary(summary: Summary) -> None:
    from benchmark.results.store import ResultsStore

    frame = ResultsStore(summary.results_dir / "results.sqlite").frame(summary.keys)
    try:
        from benchmark.results import reporting

        reports = reporting.load()
        banner = reports.budget_banner(frame)  # a CPU-budget run says so before any number
        print(f"{banner}\n\n" if banner else "", end="")
        print(reports.comparison_table(frame, fmt="markdown"))
    except Exception as exc:  # noqa: BLE001 - the summary must print even if a report piece breaks
        print(f"(table unavailable: {exc})")
    print(f"\ncells planned {summary.planned}, already done {summary.already_done}, ran {summary.ran}, "
          f"skipped {summary.skipped}, failed {len(summary.failed)}; wall time {summary.wall_s:.1f} s")
    if summary.ran:
        print(f"time: reconstruction {summary.reconstruct_s:.1f} s, training/loading {summary.prepare_s:.1f} s, "
              f"batch-size calibration {summary.calibrate_s:.1f} s, "
              f"harness (data, metrics, tracking, report) {summary.harness_s:.1f} s = "
              f"{summary.harness_s / max(summary.wall_s, 1e-9):.1%} of the wall time")
        split = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in summary.parts.items())
        print(f"harness split: {split}")
    if summary.no_weights:
        print(f"skipped, weights unavailable: {', '.join(sorted(summary.no_weights))} (set $DIPBENCH_WEIGHTS to a "
              "folder holding them, or run `make install` where the package index is reachable; "
              "each cell's record says which file)")
    if summary.no_data:
        print(f"skipped, datasets unavailable: {', '.join(sorted(summary.no_data))} (set DIPBENCH_DATA to a folder "
              "holding them, e.g. DIPBENCH_DATA=../shared/datasets, or run where they can be downloaded; "
              "each cell's record says why)")
    for where, error in summary.failed:
        print(f"  FAILED {where}: {error}")
    print(f"results: {summary.results_dir}/results.sqlite   MLflow parent run: {summary.parent_run_id}")
    if summary.report:
        print(f"report: {summary.report}")


def cmd_tune(args: argparse.Namespace) -> int:
    from benchmark.results.tracking import Tracker
    from benchmark.run import profiles, tuned_values, tuning

    profile = profiles.load(args.profile)
    if args.tasks:
        unknown = [t for t in args.tasks if t not in profile.tasks]
        if unknown:
            raise UserError(f"--tasks: {unknown[0]!r} is not among the profile's tasks: {', '.join(profile.tasks)}")
    out = args.out or tuned_values.default_path(profile)
    command = " ".join(["python -m benchmark", *sys.argv[1:]]) if sys.argv[1:2] == ["tune"] else ""
    trackers: list[Tracker] = []  # opened with the first record: a refused request writes nothing

    def keep(record: dict[str, Any]) -> None:  # written at once: an interrupted tune keeps its finished records
        path = tuned_values.write(Path(out), profile, [record])
        trackers[:] = trackers or [Tracker(args.tracking_uri)]
        trackers[0].log_tuning(profile.name, [record], path)

    tuning.tune(profile, methods=args.methods, task_names=args.tasks, device=args.device,
                command=command or f"python -m benchmark tune --profile {args.profile}", on_record=keep)
    path = Path(out)
    print(f"tuned values: {path}")
    if tuned_values.tuned_path(profile) != Path(out):
        print(f"(profile {profile.name!r} does not read this file; `tuned: {path}` in it makes the benchmark use it)")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    """The profile's cells and their estimated cost (``benchmark.run.estimate``); runs nothing."""
    from benchmark.run import estimate, profiles

    narrowed = argparse.Namespace(**{**vars(build_parser().parse_args(["run"])), "methods": args.methods,
                                     "tasks": args.tasks})
    profile = _select(profiles.load(args.profile), narrowed)

    def say(text: str) -> None:
        print(text, file=sys.stderr)

    groups = estimate.estimate(profile, log=say)
    print(estimate.render(profile, groups, estimate.gpu_speedup(log=say), show_groups=args.groups))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from benchmark import registry
    from benchmark.problems import data, tasks
    from benchmark.run import profiles

    if args.what in ("methods", "all"):
        print("methods:")
        for name, cls in registry.available().items():
            print(f"  {name:<16} [{cls.family}] {cls.summary}")
    if args.what in ("tasks", "all"):
        print("tasks:")
        stated: dict[str, list[str]] = {}
        for name, task in tasks.TASKS.items():
            print(f"  {name:<22} {task.description}")
            if task.conventions:
                stated.setdefault(task.conventions, []).append(name)
        for text, names in stated.items():  # what a reader could assume otherwise, once per statement
            print(f"  conventions of {', '.join(names)}:\n    {text}")
    if args.what in ("datasets", "all"):
        print("datasets:")
        for name, desc in data.available().items():
            print(f"  {name:<10} {desc}")
    if args.what in ("profiles", "all"):
        print("profiles:")
        for name in profiles.available():
            print(f"  {name:<8} {profiles.load(name).description}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from benchmark.results.store import ResultsStore
    from benchmark.run import profiles, runner
    from benchmark.run.plan import make_plan

    profile = profiles.load(args.profile)
    results = args.results or runner.default_results_dir(profile)
    db = Path(results) / "results.sqlite"
    if not db.exists():
        raise UserError(f"no results store at {db}; run `python -m benchmark run --profile {profile.name}` first")
    cells, _ = make_plan(profile)
    frame = ResultsStore.open_existing(db).frame([c.key for c in cells])
    print(f"report: {report_builder(profile)(frame, Path(results))}")
    if args.docs is not None:
        from benchmark.results import reporting
        from benchmark.run import tuning

        page = reporting.load().build_docs_page(frame, Path(args.docs) / "results" / profile.name,
                                                title=f"Results of the {profile.name} profile",
                                                tuning=tuning.report_rows(profile))
        print(f"docs results page: {page}")
    return 0


def cmd_docs(args: argparse.Namespace) -> int:
    from benchmark import docsite

    for path in docsite.write_reference(args.out):
        print(f"reference page: {path}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from benchmark.results.export import export
    from benchmark.run import profiles, runner

    results = args.results or runner.default_results_dir(profiles.load(args.profile))
    for name, path in export(Path(results) / "results.sqlite", args.out, args.format).items():
        print(f"{name}: {path}")
    return 0


def _can_open_a_browser() -> bool:
    """A graphical browser can open (never a console one, which would take the terminal over)."""
    return sys.platform in ("darwin", "win32") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _open_when_up(base: str, urls: list[str], server: subprocess.Popen[bytes]) -> None:
    import urllib.request
    import webbrowser

    for _ in range(240):
        if server.poll() is not None:
            return
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2):
                break
        except OSError:
            time.sleep(0.5)
    for url in urls:
        webbrowser.open(url)


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from benchmark.results import leaderboard
    from benchmark.results.tracking import EXPERIMENT, tracking_uri

    uri = tracking_uri(args.tracking_uri)
    base = f"http://{args.host}:{args.port}"
    boards = leaderboard.publish_latest(uri, EXPERIMENT, args.profile)
    print(f"leaderboard, one page per task (method runs ranked by PSNR), over {uri}:")
    for board in boards:
        print(f"  {board.task} · {board.dataset}: {board.url(base)}")
    if args.no_serve:
        return 0
    mlflow = Path(sys.executable).with_name("mlflow")
    cmd = [str(mlflow), "server", "--backend-store-uri", uri, "--host", args.host, "--port", str(args.port),
           "--workers", "1"]
    print(f"MLflow UI on {base} (Ctrl-C to stop)")
    server = subprocess.Popen(cmd)
    if not args.no_browser and _can_open_a_browser():
        threading.Thread(target=_open_when_up, args=(base, [b.url(base) for b in boards], server),
                         daemon=True).start()
    try:
        return server.wait()
    except KeyboardInterrupt:
        server.terminate()
        server.wait()
        raise


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    commands = {"run": cmd_run, "tune": cmd_tune, "plan": cmd_plan, "list": cmd_list, "report": cmd_report,
                "export": cmd_export, "leaderboard": cmd_leaderboard, "docs": cmd_docs}
    try:
        return commands[args.command](args)
    except UserError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished cells are saved; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
