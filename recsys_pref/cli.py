"""The `recsys-pref` command line: demo, fit, recommend, evaluate and bench.

Input is validated at this boundary: numbers by their argparse types (a usage error, exit 2,
before anything loads), files and configurations by the loaders they go through; `main` turns
every error those raise into one line on stderr and exit status 2, never a traceback (set
RECSYS_PREF_TRACEBACK=1 to see one). Heavy modules (polars, torch, lightning, faiss, implicit)
are imported inside the command handlers, so `--help` and usage errors return at once.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from recsys_pref.batch.command import add_batch_command
from recsys_pref.bench.results import SUITES
from recsys_pref.service import add_serve_command

TRACEBACK_ENV = "RECSYS_PREF_TRACEBACK"
#: --out of `recommend`: suffix -> format
FRAME_FORMATS = {".parquet": "parquet", ".csv": "csv", ".json": "json"}
PRINTED_ROWS = 100  # rows `recommend` prints without --out before saying how many more there are


def _positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _frame_path(text: str) -> Path:
    """An argparse type: an output file whose suffix names a format of FRAME_FORMATS."""
    path = Path(text)
    if path.suffix.lower() not in FRAME_FORMATS:
        raise argparse.ArgumentTypeError(
            f"{text!r} has no known extension; use one of {', '.join(FRAME_FORMATS)}")
    return path


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
    group.add_argument("--positive-threshold", type=float, default=None,
                       help="ratings >= this are positives (default: 4 on MovieLens; every row of a file)")
    group.add_argument("--synthetic", type=_key_value, action="append", default=[], metavar="KEY=VALUE",
                       help="an argument of the synthetic generator, e.g. --synthetic n_users=100000")


def _load(args: argparse.Namespace):
    from recsys_pref.data import DATASET_DEFAULT, load_dataset

    synthetic = dict(getattr(args, "synthetic", []))
    return load_dataset(
        args.dataset,
        data_dir=args.data_dir,
        user_col=args.user_col,
        item_col=args.item_col,
        rating_col=args.rating_col,
        timestamp_col=args.timestamp_col,
        positive_threshold=DATASET_DEFAULT if args.positive_threshold is None else args.positive_threshold,
        **synthetic,
    )


def _key_value(text: str) -> tuple[str, Any]:
    """KEY=VALUE with VALUE parsed as a YAML scalar (so 512 is an int and 0.5 a float)."""
    import yaml

    key, separator, value = text.partition("=")
    if not separator or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, yaml.safe_load(value)
    except yaml.YAMLError:
        raise argparse.ArgumentTypeError(f"the value of {key} is not a YAML scalar: {value!r}") from None


def _load_trainable(args: argparse.Namespace):
    """`_load`, refusing a dataset too small to train on before any training starts."""
    from recsys_pref.data import check_trainable

    dataset = _load(args)
    check_trainable(dataset)
    return dataset


def _cmd_bench(args: argparse.Namespace) -> int:
    from recsys_pref.bench import run_suite
    from recsys_pref.bench.results import write_result

    dataset = _load_trainable(args)
    print(dataset.summary())
    result = run_suite(args.suite, dataset, quick=args.quick, models=args.models, seeds=args.seeds,
                       budget=args.budget, overrides=dict(args.overrides), sweep=args.sweep)
    json_path, md_path = write_result(result, args.out)
    if result.suite == "safeguards" and not args.sweep:
        from recsys_pref.bench.safeguards import write_plot

        print(f"wrote {write_plot(result, args.out)}")
    if result.suite == "amortization":
        from recsys_pref.bench.amortization import write_plot as write_amortization_plot

        print(f"wrote {write_amortization_plot(result, args.out)}")
    print(md_path.read_text())
    print(f"wrote {json_path} and {md_path}")
    return 0


def _cmd_fit(args: argparse.Namespace) -> int:
    from recsys_pref.config import load_model_config
    from recsys_pref.models.persona import PRESETS, PersonaConfig
    from recsys_pref.pipeline import PersonaPipeline

    name, params = load_model_config(args.config)
    if name not in PRESETS:
        raise ValueError(f"`fit` saves persona models ({', '.join(PRESETS)}); {args.config} configures {name!r}")
    from recsys_pref.models.persona.training import is_global_zero

    dataset = _load_trainable(args)
    print(dataset.summary())
    pipeline = PersonaPipeline.fit(dataset, PersonaConfig.preset(name, **(params | {"progress": True}
                                                                           | dict(args.overrides))))
    if not is_global_zero():  # an extra process of Lightning's "ddp" launcher: rank 0 saves
        return 0
    print("training: " + ", ".join(f"{key}={value:.6g}" for key, value in pipeline.model.training_summary.items()))
    pipeline.save(args.out)
    print(f"saved {name} ({pipeline.model.state_bytes} bytes per user) to {args.out}")
    return 0


def _cmd_recommend(args: argparse.Namespace) -> int:
    from recsys_pref.batch.recommend import read_user_ids
    from recsys_pref.pipeline import PersonaPipeline

    pipeline = PersonaPipeline.load(args.model)
    users = read_user_ids(args.users)
    users = [_as_known_type(user, pipeline) for user in users]
    safeguards = None
    if args.safeguards is not None:
        from recsys_pref.safeguards import load_safeguards

        safeguards = load_safeguards(args.safeguards)
    frame = pipeline.recommend(users, k=args.k, unknown_users=args.unknown_users, safeguards=safeguards,
                               filter_seen=args.filter_seen)
    if args.out is None:
        _print_frame(frame)
    else:
        _write_frame(frame, args.out)
        print(f"wrote {frame.height} recommendations for {len(users)} users to {args.out}")
    return 0


def _print_frame(frame) -> None:
    """Every column, and the first PRINTED_ROWS rows with a line saying how many are hidden."""
    import polars as pl

    shown = min(frame.height, PRINTED_ROWS)
    with pl.Config(tbl_rows=shown, tbl_cols=-1, tbl_width_chars=250, fmt_str_lengths=60,
                   fmt_table_cell_list_len=5, tbl_hide_dataframe_shape=True):
        print(frame.head(shown))
    if frame.height > shown:
        print(f"{frame.height - shown} more rows not shown ({frame.height} in all); "
              "write them all with --out FILE.csv|.parquet|.json")


def _write_frame(frame, path: Path) -> None:
    """By suffix (FRAME_FORMATS): Parquet, CSV (lists joined by ";") or JSON (an array of row
    objects), through a temporary file and a rename: an interrupted run leaves any previous file
    intact and never half a file."""
    kind = FRAME_FORMATS[path.suffix.lower()]
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        if kind == "parquet":
            frame.write_parquet(temporary)
        elif kind == "json":
            frame.write_json(temporary)
        else:
            _flat(frame).write_csv(temporary)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _flat(frame):
    """List columns (because_you_liked) as ";"-joined text, since CSV has no lists."""
    import polars as pl

    lists = [name for name, dtype in frame.schema.items() if isinstance(dtype, pl.List)]
    return frame.with_columns(pl.col(name).cast(pl.List(pl.String)).list.join(";") for name in lists)


def _cmd_explain(args: argparse.Namespace) -> int:
    from recsys_pref.pipeline import PersonaPipeline

    pipeline = PersonaPipeline.load(args.model)
    user = _as_known_type(args.user, pipeline)
    item = _as_id(args.item, pipeline.item_ids)
    print(pipeline.explain(user, item))
    print(pipeline.summary(user))
    return 0


def _as_known_type(user, pipeline):
    """Ids read as text match integer user ids when the model's ids are integers."""
    return _as_id(user, pipeline.user_ids)


def _as_id(value, ids):
    """`value` read as text, as an int when `ids` (an IdMap) lacks the text but it is an integer."""
    if isinstance(value, str) and value not in ids and value.lstrip("-").isdigit():
        return int(value)
    return value


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from recsys_pref.core.tables import markdown_table
    from recsys_pref.config import load_model_config
    from recsys_pref.data import SplitConfig, make_split
    from recsys_pref.evaluation.evaluate import evaluate
    from recsys_pref.evaluation.tuning import build_model

    name, params = load_model_config(args.config)
    dataset = _load_trainable(args)
    protocol = args.protocol or ("fixed" if dataset.fixed_test is not None else "strong")
    split = make_split(dataset, SplitConfig(protocol=protocol, seed=args.seed))
    model = build_model(name, params, args.seed).fit(split.train)
    result = evaluate(model, split.test, catalog=split.catalog, recall_denominator=split.recall_denominator,
                      progress=True)
    print(f"{name} on {dataset.name} ({protocol}, seed {args.seed}, {len(split.test)} test users)")
    print(markdown_table(metric_rows(result.metrics), ["metric", "value"]))
    return 0


def metric_rows(metrics: dict[str, float]) -> list[dict[str, Any]]:
    """One row per metric, for a table read down rather than across; counts ("n_...") as integers."""
    return [{"metric": name, "value": int(value) if name.startswith("n_") else value} for name, value in metrics.items()]


def _cmd_onboard(args: argparse.Namespace) -> int:
    from recsys_pref.terminal import onboard_command

    return onboard_command(args.model, args.question_type, args.questions, args.k, args.state_out, args.state_in,
                           args.policy)


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

    fit = commands.add_parser("fit", help="train a persona model on a whole dataset and save its artifact")
    _add_dataset_options(fit)
    fit.add_argument("--config", default="persona", help="a YAML file, or a name under conf/ (default: persona)")
    fit.add_argument("--out", type=Path, required=True, help="artifact directory to write")
    fit.add_argument("--set", dest="overrides", type=_key_value, action="append", default=[], metavar="KEY=VALUE",
                     help="override a hyperparameter of the config, e.g. --set strategy=ddp --set devices=2")
    fit.set_defaults(handler=_cmd_fit)

    recommend = commands.add_parser("recommend", help="top-k recommendations with personas for users of a saved model")
    recommend.add_argument("--model", type=Path, required=True, help="artifact directory written by `fit`")
    recommend.add_argument("--users", type=Path, required=True, help="CSV/Parquet with user_id, or one id per line")
    recommend.add_argument("--k", type=_positive_int, default=10, help="recommendations per user (capped at the catalog)")
    recommend.add_argument("--out", type=_frame_path, default=None,
                           help=".parquet, .csv or .json (default: print the first 100 rows, every column)")
    recommend.add_argument("--filter-seen", choices=("all", "positives", "none"), default="all",
                           help="items never recommended: all the user interacted with (default), "
                                "only their positives, or none")
    recommend.add_argument("--unknown-users", choices=("error", "population"), default="error",
                           help="users without history: an error, or the population prior's recommendations")
    recommend.add_argument("--safeguards", default=None, metavar="PRESET|YAML",
                           help="echo-chamber safeguards: off, calibrated, shrinkage, exploration, all, "
                                "or a YAML file / name under conf/ (conf/safeguards.yaml); default: none")
    recommend.set_defaults(handler=_cmd_recommend)

    explain = commands.add_parser("explain", help="why a saved model recommends an item to a user, and the user's summary")
    explain.add_argument("--model", type=Path, required=True, help="artifact directory written by `fit`")
    explain.add_argument("--user", required=True, help="a user id the model knows")
    explain.add_argument("--item", required=True, help="an item id")
    explain.set_defaults(handler=_cmd_explain)

    evaluate_parser = commands.add_parser("evaluate", help="fit one configured model on a split and report test metrics")
    _add_dataset_options(evaluate_parser)
    evaluate_parser.add_argument("--config", default="persona", help="a YAML file, or a name under conf/")
    evaluate_parser.add_argument("--protocol", choices=("strong", "temporal", "fixed"), default=None)
    evaluate_parser.add_argument("--seed", type=int, default=0)
    evaluate_parser.set_defaults(handler=_cmd_evaluate)

    onboard = commands.add_parser("onboard", help="onboard a new user by a few questions in the terminal")
    onboard.add_argument("--model", type=Path, required=True, help="artifact directory written by `fit`")
    onboard.add_argument("--question-type", choices=("choice", "pair"), default="choice",
                         help="choice: which of a few do you like most, or none; pair: which of two")
    onboard.add_argument("--questions", type=_positive_int, default=10, help="questions to ask (default 10)")
    onboard.add_argument("--k", type=_positive_int, default=10, help="recommendations to show")
    onboard.add_argument("--state-out", type=Path, default=None, help="save the final onboarding state (JSON)")
    onboard.add_argument("--state-in", type=Path, default=None, help="resume a saved onboarding state (JSON)")
    onboard.add_argument("--policy", choices=("tree", "information"), default="tree",
                         help="tree: the learned interview tree, then the information criterion (default); "
                              "information: the information criterion alone")
    onboard.set_defaults(handler=_cmd_onboard)

    add_serve_command(commands)
    add_batch_command(commands)

    bench = commands.add_parser("bench", help="run a benchmark suite and write DIR/SUITE.json and DIR/SUITE.md")
    bench.add_argument("suite", choices=SUITES)
    _add_dataset_options(bench)
    bench.add_argument("--out", type=Path, required=True, help="output directory")
    bench.add_argument("--quick", action="store_true", help="a reduced run for tests")
    bench.add_argument("--models", nargs="+", default=None,
                       help="models to include (default: the suite's own list); safeguards: the presets to run")
    bench.add_argument("--seeds", type=_positive_int, default=None,
                       help="number of seeds (default: 3, or 1 with --quick)")
    bench.add_argument("--budget", type=_positive_int, default=None,
                       help="configurations tried per model (default: 8, or 2 with --quick)")
    bench.add_argument("--set", dest="overrides", type=_key_value, action="append", default=[], metavar="KEY=VALUE",
                       help="fix a hyperparameter for every model that has it, e.g. --set accelerator=gpu")
    bench.add_argument("--sweep", action="store_true",
                       help="accuracy: the persona model over M x K x tau on validation users; "
                            "safeguards: a grid of safeguard settings read at the last round against off")
    bench.set_defaults(handler=_cmd_bench)
    return parser


#: Errors that bad input raises (ArtifactError, ConfigError, OnboardingError and
#: DatasetNotFoundError are ValueErrors; UnknownIdError is a KeyError; TypeError: values of the
#: wrong type, e.g. generator arguments for a dataset that takes none; OSError: files that cannot
#: be read or written).
INPUT_ERRORS = (ValueError, KeyError, TypeError, NotImplementedError, OSError)


def main(argv: list[str] | None = None) -> int:
    """Run one command; bad input ends with one line on stderr and exit status 2, Ctrl-C with 130."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except INPUT_ERRORS as error:
        if os.environ.get(TRACEBACK_ENV) == "1":
            raise
        message = str(error).strip() or type(error).__name__
        print(f"recsys-pref {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"recsys-pref {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
