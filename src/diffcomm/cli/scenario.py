"""``diffcomm scenario machine --config FILE --out DIR``: the machine-centric scenario (resumable).

Also ``diffcomm scenario ship-taskjscc RUN --name NAME --recipe FILE``: evaluate a finished
``diffcomm train taskjscc`` run and add it to the zoo.

Example:
    diffcomm scenario machine --config results/machine/grid.toml --out results/machine
    # rerun the same command after an interruption: finished points are read back and skipped
"""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("scenario", help="run a scenario (machine: task accuracy vs channel uses, SNR, compute)",
                       description="Scenarios compare whole systems on one grid.")
    ssub = p.add_subparsers(dest="scenario_command", metavar="SCENARIO", required=True)
    mp = ssub.add_parser("machine", help="classification accuracy vs channel uses, SNR and receiver compute",
                         description="Run the machine-centric grid of --config (reconstruct-then-classify, task "
                                     "JSCC, semantic-only label, diffusion classifier) and write DIR/records.jsonl "
                                     "(one JSON record per point; rerunning resumes), DIR/frontier.json, "
                                     "DIR/summary.md and the frontier figures.",
                         epilog="Config: see results/machine/grid.toml and diffcomm.scenarios.machine.")
    mp.add_argument("--config", required=True, help="scenario grid (.toml, .yaml or .json)")
    mp.add_argument("--out", required=True, help="output folder (records.jsonl, frontier.json, summary.md, *.png)")
    mp.add_argument("--plan", action="store_true", help="list the points and exit (nothing is computed)")
    mp.add_argument("--quiet", action="store_true", help="no progress bar")
    mp.set_defaults(func=run_machine)
    ap = ssub.add_parser("agents", help="K agents, one shared prior: centralised vs distributed decoding, policy",
                         description="Run the agent-centric grid of --config (centralised fusion, distributed "
                                     "decoding with consensus, local decoding; optionally the transmission "
                                     "policy) and write DIR/records.jsonl (rerunning resumes), DIR/summary.md, "
                                     "DIR/tradeoff.json and the figures.",
                         epilog="Config: see results/agents/grid.toml and diffcomm.scenarios.agents.")
    ap.add_argument("--config", required=True, help="scenario config (.toml, .yaml or .json)")
    ap.add_argument("--out", required=True, help="output folder (records.jsonl, summary.md, *.png)")
    ap.add_argument("--plan", action="store_true", help="list the points and exit (nothing is computed)")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    ap.set_defaults(func=run_agents)
    sp = ssub.add_parser("ship-taskjscc", help="evaluate a finished task-JSCC training run and add it to the zoo")
    sp.add_argument("run", help="training run folder (with model.safetensors)")
    sp.add_argument("--name", required=True, help="zoo name, e.g. fmnist-taskjscc-awgn-k8")
    sp.add_argument("--recipe", required=True, help="the recipe the run was trained with")
    sp.set_defaults(func=run_ship)


def _run_grid(module: str, args: argparse.Namespace) -> int:
    """Plan ``--config`` with ``module``'s planner, list it (``--plan``) or run it into ``--out`` (resumable)."""
    import importlib

    from diffcomm.checks import check_output_path

    scenario = importlib.import_module(module)
    check_output_path(args.out, "dir")
    grid = scenario.plan_from_mapping(scenario.load_scenario_config(args.config))
    if args.plan:
        for point in grid.points:
            print(point.label)
        print(f"{len(grid.points)} points", file=sys.stderr)
        return 0
    summary = scenario.run_scenario(grid, args.out, progress=not args.quiet)
    print(f"{len(grid.points)} points: {summary.computed} computed, {summary.reused} already in {args.out}; "
          f"{summary.seconds:.1f} s; report: {args.out}/summary.md")
    return 0


def run_machine(args: argparse.Namespace) -> int:
    return _run_grid("diffcomm.scenarios.machine", args)


def run_agents(args: argparse.Namespace) -> int:
    return _run_grid("diffcomm.scenarios.agents", args)


def run_ship(args: argparse.Namespace) -> int:
    from diffcomm.scenarios.taskjscc import ship_taskjscc

    config = ship_taskjscc(args.run, args.name, args.recipe)
    print(json.dumps(config["metrics"], indent=2))
    return 0
