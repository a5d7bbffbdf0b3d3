"""``diffcomm receivers``: the registered receivers, their capabilities and options (from the registry)."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("receivers", help="list the receivers with what they need and their options",
                       description="Every registered receiver: the link it decodes, the CSI and prior it uses, "
                                   "and its options with types, ranges and defaults.")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def describe() -> list[dict]:
    from diffcomm.receivers.base import RECEIVERS, receiver_names

    out = []
    for name in receiver_names():
        spec = RECEIVERS[name]
        defaults = spec.defaults()
        out.append({"name": name, "description": spec.description, "link": spec.link, "csi": spec.csi,
                    "prior": spec.prior, "paper": spec.paper,
                    "options": {k: {"type": o.describe(), "default": defaults[k],
                                    **({"tune": list(o.tune)} if o.tune else {})} for k, o in spec.options.items()}})
    return out


def run(args: argparse.Namespace) -> int:
    from diffcomm.utils import format_table

    rows = describe()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = [[r["name"], r["link"], r["csi"], r["prior"] or "-",
              ", ".join(f"{k}={v['default']}{'~' if 'tune' in v else ''}" for k, v in r["options"].items()) or "-"]
             for r in rows]
    print(format_table(["receiver", "link", "csi", "prior", "options (defaults)"], table))
    print("~ a strength option: its default is calibrated per link and SNR where `diffcomm tune` has stored one")
    return 0
