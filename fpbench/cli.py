"""The ``fpbench`` command: a thin layer over functions a notebook user can call."""

from __future__ import annotations

import argparse
import sys


class UserError(Exception):
    """A mistake in the user's input: printed as one line, no traceback, exit code 2."""


def _cmd_check(args) -> int:
    import torch

    from .check import CHECK_T0, format_check, run_check
    from .residuals import Box

    torch.set_num_threads(max(1, torch.get_num_threads()))
    box = Box(args.low, args.high)
    rows = run_check(n=args.points, box=box, seed=args.seed)
    print(f"Exact-density residuals, float64, {args.points} points uniform in "
          f"[{box.low}, {box.high}]^d x [{CHECK_T0}, T] per row:\n")
    print(format_check(rows))
    worst = max(max(r.max_abs_log_fp for r in rows), 0.0)
    print(f"\nworst max |R~| = {worst:.2e} (expected: round-off, below 1e-8)")
    return 0 if worst < 1e-8 else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fpbench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="residuals of the exact densities (the oracle self-check)")
    check.add_argument("--points", type=int, default=500)
    check.add_argument("--seed", type=int, default=0)
    check.add_argument("--low", type=float, default=-3.5)
    check.add_argument("--high", type=float, default=3.5)
    check.set_defaults(func=_cmd_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (UserError, ValueError, FileNotFoundError) as err:
        print(f"fpbench: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
