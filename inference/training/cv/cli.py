"""The local command line: `prep` writes the device data files, `convert` turns a device run's
output folder into `fold{k}.keras` models and checks them."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from . import __doc__ as _PACKAGE_DOC
from .device_data import DEFAULT_DATA_DIR, DEFAULT_DEVICE_DIR, prepare_device_data
from .folds import DEFAULT_K
from .output import check_conversion, convert_to_keras, load_fold_weights


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m inference.training.cv", description=_PACKAGE_DOC.split("\n\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prep", help="write var/device/data_{size}.npz for the device run")
    prep.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    prep.add_argument("--out", type=Path, default=DEFAULT_DEVICE_DIR)
    prep.add_argument("--sizes", type=int, nargs="+", default=[384, 512])
    prep.add_argument("--k", type=int, default=DEFAULT_K)
    prep.add_argument("--limit", type=int, default=None, help="at most this many slices per class")
    prep.add_argument("--cache-dir", type=Path, default=None, help="cache of the 256 px slices (none)")
    prep.add_argument("--no-derive", action="store_true", help="store every size in full")
    convert = sub.add_parser("convert", help="device output folder -> fold{k}.keras, checked")
    convert.add_argument("out_dir", type=Path)
    convert.add_argument("--dest", type=Path, default=None, help="where to save (default: out_dir)")
    convert.add_argument("--data", type=Path, default=None, help="default: var/device/data_{size}.npz")
    convert.add_argument("--check", type=int, default=4, help="held-out slices per fold to compare (0: none)")
    convert.add_argument("--tolerance", type=float, default=1e-4)
    return parser


def _convert_command(args: argparse.Namespace) -> int:
    files = convert_to_keras(args.out_dir, args.dest)
    if not args.check:
        return 0
    meta, _ = load_fold_weights(args.out_dir)
    data_path = args.data or DEFAULT_DEVICE_DIR / f"data_{meta['image_size']}.npz"
    worst = check_conversion(
        args.out_dir, data_path, models_dir=files[0].parent if files else None, per_fold=args.check
    )
    ok = worst < args.tolerance
    print(f"{'OK' if ok else 'FAILED'}: largest |difference| {worst:.2e} (tolerance {args.tolerance:.0e})")
    return 0 if ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "prep":
        prepare_device_data(
            args.data_dir,
            args.out,
            sizes=args.sizes,
            k=args.k,
            limit=args.limit,
            cache_dir=args.cache_dir,
            derive=not args.no_derive,
        )
        return 0
    return _convert_command(args)
