"""`keras-timbre export RUN --out DIR/1`: a TF Serving SavedModel with the frontend inside."""

from __future__ import annotations

import argparse
import datetime
import sys


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a run as a TF Serving SavedModel (waveform in)",
        description=(
            "Writes a TF Serving-ready SavedModel of RUN to the version folder --out "
            "(e.g. exported/timbre/1). The log-mel frontend and the run's normalisation "
            "run inside the graph; signatures: serving_default/reconstruct, encode, decode, "
            "synthesize. Runs under the TensorFlow backend whatever backend trained RUN."
        ),
    )
    parser.add_argument("run", help="run directory (model.keras, frontend.json, stats.npz)")
    parser.add_argument("--out", required=True, help="numeric version folder to write, e.g. exported/timbre/1")
    parser.add_argument("--overwrite", action="store_true", help="replace a different model already in --out")
    parser.add_argument(
        "--griffin-lim-iters", type=int, default=None, help="Griffin-Lim iterations of `synthesize` (default 32)"
    )
    parser.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    from keras_timbre.export import saved_model as export

    iters = export.GRIFFIN_LIM_ITERS if args.griffin_lim_iters is None else args.griffin_lim_iters
    if iters < 0:
        raise ValueError(f"--griffin-lim-iters must be >= 0, got {iters}")
    started = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    try:
        path = export.export_run(args.run, args.out, overwrite=args.overwrite, griffin_lim_iters=iters)
    except export.ExportExistsError as error:
        print(f"keras-timbre export: error: {error}", file=sys.stderr)
        return 2
    metadata = export.read_export_metadata(path) or {}
    exported_at = metadata.get("exported_at")
    fingerprint = str(metadata.get("fingerprint"))[:12]
    if exported_at and datetime.datetime.fromisoformat(exported_at) < started:
        print(f"{path} already holds this export (fingerprint {fingerprint}, exported {exported_at}); nothing written")
    else:
        print(f"SavedModel at {path} (fingerprint {fingerprint})")
    signatures = metadata.get("signatures", export.SIGNATURES)
    print(f"Signatures: {', '.join(signatures)}. Inspect: saved_model_cli show --dir {path} --all")
    return 0
