"""The ``fedjax-deep`` command line: parses, then calls ``train.run`` or ``report``.

    fedjax-deep train --config configs/digits_depth.py --workdir runs/depth [--config.a.b=value ...]
    fedjax-deep train --config file.py:arg --workdir runs/x   (a config family: get_config('arg'))
    fedjax-deep report runs/depth
    fedjax-deep compare runs/tuned [--group model.depth] [--tune client_opt.learning_rate]
    fedjax-deep prepare cifar10 --data-dir ~/tensorflow_datasets   (needs network + TensorFlow)

Bad input (a config field, a value, a file, a workdir that cannot host the run) prints one line,
``error: ...``, and exits with code 2; a fault mid-run (disk, non-finite values) exits with 1; Ctrl-C
or SIGTERM ends the run after its current round and checkpoint, says how to resume, and exits with
130 or 143 (see ``fedjax_deep.errors``). A sweep's report is written after its runs.
"""

from __future__ import annotations

import argparse
import shlex
import sys

USAGE_FIX = "see fedjax-deep --help"

# Imports stay inside the functions that need them: ``--help`` answers without loading JAX.
TRAIN_EPILOG = """\
overrides (anywhere on the line, any number, applied in order):
  --config.FIELD=VALUE   set one field of the config, e.g. --config.num_rounds=20
                         --config.model.depth=8 --config.client_opt.learning_rate=0.05;
                         a value is read as the field's type (tuples as Python literals,
                         booleans as true/false); an unknown field or a bad value is one
                         line naming it, exit code 2
  --config.sweep=ENTRIES run every point of a sweep, each in WORKDIR/<point name>:
                         --config.sweep="(('model.depth', (2, 8)), ('seed', (0, 1, 2)))"
                         is a product (6 points); (('f.a', 'f.b'), ((a1, b1), (a2, b2)))
                         moves fields together; points that differ only in seeds and
                         hyper-parameters share one compiled program (config.sweep_axis)

config families:
  --config FILE.py:ARG   calls FILE's get_config('ARG'), the text after the colon as a
                         string: one file holds a family of configs, e.g. --config
                         experiments/depth_divergence/configs/e1/widen.py:b
                         (without ':ARG', get_config() is called with no argument)

Every field, its default and its check: fedjax_deep/config.py (FIELDS). Rerunning the same
command resumes from the last checkpoint; a finished run is left as it is.
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, instead of argparse's usage block
        print(f"error: {message} ({USAGE_FIX})", file=sys.stderr)
        raise SystemExit(2)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fedjax-deep", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    train = sub.add_parser(
        "train",
        help="run an experiment (or a sweep) from a config file",
        description="Runs a config file's get_config() (or every point of its sweep) into "
        "--workdir.",
        epilog=TRAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument("--config", required=True, metavar="FILE.py[:ARG]",
                       help="a get_config() file, e.g. configs/digits_tiny.py; FILE.py:ARG "
                       "calls get_config('ARG') (a config family)")  # fmt: skip
    train.add_argument("--workdir", required=True, help="directory for metrics, reports, plots")
    train.add_argument("--no-progress", action="store_true", help="no progress bars")
    train.add_argument(
        "--distributed",
        action="store_true",
        help="call jax.distributed.initialize() first (multi-host: run the same command on "
        "every host; coordinator from the environment, e.g. TPU pods, SLURM, or "
        "JAX_COORDINATOR_ADDRESS/JAX_NUM_PROCESSES/JAX_PROCESS_ID)",
    )
    report = sub.add_parser("report", help="(re)write the markdown report and plots of sweeps")
    report.add_argument("workdirs", nargs="+", help="sweep workdirs (each gets its report.md)")
    compare = sub.add_parser(
        "compare",
        help="each arm of a sweep at its learning rate tuned on validation accuracy, against the "
        "reference arm, seeds paired (fedjax_deep.analysis): compare.md, compare.json, curves.png",
    )
    compare.add_argument("workdirs", nargs="+", metavar="workdir",
                         help="one sweep, or several read together (a control sweep and the "
                         "baseline sweep it shares seeds with)")  # fmt: skip
    compare.add_argument("--out", default="", help="where to write (default: the first workdir)")
    compare.add_argument("--group", default="model.depth",
                         help="the field compared across, or several comma-separated (each "
                         "combination is a group with its own reference arm)")  # fmt: skip
    compare.add_argument("--tune", default="client_opt.learning_rate", help="the tuned field")
    compare.add_argument("--reference", default=None,
                         help="the reference arm: FIELD=VALUE[,FIELD=VALUE...] (default "
                         "mode=centralized; one given explicitly must match an arm)")  # fmt: skip
    compare.add_argument(
        "--window", type=int, default=5, help="evaluations averaged into an end value"
    )
    compare.add_argument("--at-round", type=int, default=0, metavar="N",
                         help="read every run at round N: a run extended past N is cut there, "
                         "one that ends before N is left out and named (default: each run's "
                         "last round)")  # fmt: skip
    compare.add_argument("--tune-on", choices=("val", "test"), default="val",
                         help="the accuracy the rate is chosen on: val (the default; runs without "
                         "a validation split are refused) or test (asked for explicitly, and "
                         "labelled so in compare.md and compare.json)")  # fmt: skip
    forks = sub.add_parser(
        "forks",
        help="the report of sweeps that fork (fl.fork_rounds, fl.fork_last): FL / null ratios, the "
        "averaging penalty and each layer's averaging cost (forks.md, forks.json, plots)",
    )
    forks.add_argument("workdirs", nargs="+", metavar="workdir", help="sweep workdirs")
    forks.add_argument("--out", default="", help="where to write (default: the first workdir)")
    prepare = sub.add_parser(
        "prepare",
        help="prepare a tensorflow-datasets dataset as array_record folders (needs network and "
        "TensorFlow once: pip install 'fedjax_deep[prepare]')",
    )
    prepare.add_argument("dataset", choices=["cifar10", "cifar100"])
    prepare.add_argument("--data-dir", required=True)
    prepare.add_argument("--manual-dir", default=None, help="already downloaded archives")
    return parser


def _prepare(args) -> int:
    """Builds the array_record folders that ``tfds.data_source`` reads without TensorFlow."""
    import tensorflow_datasets as tfds

    try:
        import tensorflow  # noqa: F401  (tfds needs it to build, not to read)
    except ImportError:
        print(
            "error: preparing needs TensorFlow once: pip install 'fedjax_deep[prepare]'",
            file=sys.stderr,
        )
        return 2
    builder = tfds.builder(args.dataset, data_dir=args.data_dir, file_format="array_record")
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=args.manual_dir)
    )
    print(f"prepared {args.dataset} under {args.data_dir}")
    return 0


def _compare(args) -> int:
    from fedjax_deep.analysis import parse_reference, write_comparison
    from fedjax_deep.config import FIELDS

    if args.window < 1:
        print(f"error: --window={args.window}: a plateau window holds at least 1 evaluation; "
              "use a positive count, e.g. --window 5", file=sys.stderr)  # fmt: skip
        return 2
    if args.at_round < 0:
        print(f"error: --at-round={args.at_round}: a round is at least 1; give the round to "
              "read every run at, e.g. --at-round 40 (0: each run's last)", file=sys.stderr)  # fmt: skip
        return 2
    try:
        reference = parse_reference(args.reference or "mode=centralized")
    except ValueError as e:
        print(f"error: --reference={args.reference!r}: {e}", file=sys.stderr)
        return 2
    # Runs made before a field existed ran at its default (analysis never imports the config).
    defaults = {name: field.default for name, field in FIELDS.items()}
    path = write_comparison(args.workdirs, args.out or args.workdirs[0], group=args.group,
                            tune=args.tune, reference=reference, window=args.window,
                            defaults=defaults, require_reference=args.reference is not None,
                            tune_on=args.tune_on, at_round=args.at_round or None)  # fmt: skip
    print(path)
    return 0


def _resume_command(argv: list[str]) -> str:
    return shlex.join(["fedjax-deep", *argv])


def _sweep_forks(config) -> bool:
    """Whether any point of a sweep forks (the fields set in the config or along its sweep)."""
    from fedjax_deep.sweep import expand

    return any(p.config.fl.fork_rounds or p.config.fl.fork_last for p in expand(config))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    overrides = [a for a in argv if a.startswith("--config.")]
    args = _parser().parse_args([a for a in argv if not a.startswith("--config.")])

    from fedjax_deep.errors import InputError, Interrupted, RunFault

    try:
        if args.command == "prepare":
            return _prepare(args)
        if args.command == "report":
            from fedjax_deep.analysis import write_sweep_report

            for workdir in args.workdirs:
                print(write_sweep_report(workdir))
            return 0
        if args.command == "compare":
            return _compare(args)
        if args.command == "forks":
            from fedjax_deep.analysis.forks import write_forks_report

            print(write_forks_report(args.workdirs, args.out or args.workdirs[0])[1])
            return 0
        from fedjax_deep.config import apply_overrides, load_config

        config = apply_overrides(load_config(args.config), overrides)
        if args.distributed:
            import jax

            jax.distributed.initialize()
        from fedjax_deep import train
        from fedjax_deep.analysis import parse_reference, write_comparison, write_sweep_report

        result = train.run(config, args.workdir, progress=not args.no_progress)
        if config.sweep and train.is_writer():
            print(write_sweep_report(args.workdir))
            if config.compare.reference:
                print(write_comparison(
                    [args.workdir], args.workdir, group=config.compare.group,
                    reference=parse_reference(config.compare.reference)))  # fmt: skip
            if _sweep_forks(config):
                from fedjax_deep.analysis.forks import write_forks_report

                print(write_forks_report([args.workdir], args.workdir)[1])
        if config.sweep:
            stopped = [name for name, s in result.items()
                       if s.get("status") == "stopped" and not s.get("earlier")]  # fmt: skip
            if stopped:
                print(f"error: {len(stopped)} of {len(result)} sweep points stopped on non-finite "
                      f"values ({', '.join(stopped)}); the lines above say where, and the other "
                      "points finished", file=sys.stderr)  # fmt: skip
                return 1
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Interrupted as e:
        print(f"stopped: {e}; resume with: {_resume_command(argv)}", file=sys.stderr)
        return 128 + e.signum
    except KeyboardInterrupt:
        print(
            "stopped: interrupted; finished rounds are checkpointed as configured; resume with: "
            + _resume_command(argv),
            file=sys.stderr,
        )
        return 130
    except RunFault as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # a write outside the run files' own handling
        where = f" ({e.filename})" if e.filename else ""
        print(f"error: {e.strerror or e}{where}; fix it, then run the same command to resume "
              "from the last checkpoint", file=sys.stderr)  # fmt: skip
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
