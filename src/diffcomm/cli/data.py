"""``diffcomm data info [--json]``: which datasets load here, their splits, shapes and classes."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="datasets: what is available offline",
                       description="Inspect the datasets diffcomm can load.")
    data_sub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    info = data_sub.add_parser("info", help="table of every dataset: availability, splits, shape, classes",
                               description="List every dataset with whether it loads here (and how to get it "
                                           "if not), split sizes, image shape and classes.")
    info.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    info.set_defaults(func=run_info)
    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])


def _classes_cell(classes: list[str]) -> str:
    if not classes:
        return "-"
    shown = ", ".join(classes[:4])
    return f"{len(classes)}: {shown}" + (", ..." if len(classes) > 4 else "")


def run_info(args: argparse.Namespace) -> int:
    from diffcomm.data import DATASETS, dataset_info
    from diffcomm.utils import format_table

    infos = [dataset_info(name) for name in DATASETS]
    if args.json:
        print(json.dumps(infos, indent=2))
        return 0
    rows, notes = [], []
    for i in infos:
        splits = ", ".join(f"{s} {n:,}" for s, n in i["splits"].items()) or "-"
        shape = "x".join(map(str, i["shape"])) if i["shape"] else "-"
        rows.append([i["name"], "yes" if i["available"] else "no*", splits, shape, _classes_cell(i["classes"])])
        if not i["available"]:
            notes.append(f"* {i['name']}: {i['how']}")
    print(format_table(["name", "available", "splits", "shape (CxHxW)", "classes"], rows))
    if notes:
        print("\n" + "\n".join(notes))
    return 0
