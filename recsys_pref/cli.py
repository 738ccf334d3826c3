"""The `recsys-pref` command line: demo, bench (and, as the library grows, fit/recommend/...)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from recsys_pref.bench.results import SUITES, write_result


def _add_dataset_options(parser: argparse.ArgumentParser, required: bool = True) -> None:
    group = parser.add_argument_group("data")
    group.add_argument("--dataset", required=required, default=None if required else "ml-latest-small",
                       help="ml-100k, ml-latest-small, ml-1m, gowalla, synthetic, or a CSV/Parquet path")
    group.add_argument("--data-dir", type=Path, default=None,
                       help="where datasets live (default: $RECSYS_PREF_DATA, then the bundled datasets/, then a user cache)")
    group.add_argument("--user-col", default="user_id")
    group.add_argument("--item-col", default="item_id")
    group.add_argument("--rating-col", default="rating")
    group.add_argument("--timestamp-col", default="timestamp")


def _load(args: argparse.Namespace):
    from recsys_pref.data import load_dataset

    return load_dataset(
        args.dataset,
        data_dir=args.data_dir,
        user_col=args.user_col,
        item_col=args.item_col,
        rating_col=args.rating_col,
        timestamp_col=args.timestamp_col,
    )


def _cmd_bench(args: argparse.Namespace) -> int:
    from recsys_pref.bench import run_suite

    dataset = _load(args)
    print(dataset.summary())
    result = run_suite(args.suite, dataset, quick=args.quick, models=args.models, seeds=args.seeds)
    json_path, md_path = write_result(result, args.out)
    print(md_path.read_text())
    print(f"wrote {json_path} and {md_path}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from recsys_pref.demo import run_demo

    run_demo(data_dir=args.data_dir, quick=args.quick)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recsys-pref", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="fit and evaluate on the bundled data, show personas and explanations")
    demo.add_argument("--data-dir", type=Path, default=None)
    demo.add_argument("--quick", action="store_true", help="a reduced run (fewer epochs, fewer users)")
    demo.set_defaults(handler=_cmd_demo)

    bench = commands.add_parser("bench", help="run a benchmark suite and write DIR/SUITE.json and DIR/SUITE.md")
    bench.add_argument("suite", choices=SUITES)
    _add_dataset_options(bench)
    bench.add_argument("--out", type=Path, required=True, help="output directory")
    bench.add_argument("--quick", action="store_true", help="a reduced run for tests")
    bench.add_argument("--models", nargs="+", default=None, help="models to include (default: the suite's own list)")
    bench.add_argument("--seeds", type=int, default=None, help="number of seeds (default: 3, or 1 with --quick)")
    bench.set_defaults(handler=_cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (ValueError, FileNotFoundError, KeyError, NotImplementedError) as error:
        print(f"recsys-pref {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
