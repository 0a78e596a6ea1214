"""`keras-timbre export RUN --out DIR/1`: a TF Serving SavedModel with the frontend inside."""

from __future__ import annotations

import argparse
import datetime
import sys

from keras_timbre.cli.arguments import add_run_argument, add_vocoder_option


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a run as a TF Serving SavedModel (waveform in)",
        description=(
            "Writes a TF Serving-ready SavedModel of RUN to the version folder --out "
            "(e.g. exported/timbre/1). The log-mel frontend and the run's normalisation "
            "run inside the graph; signatures: serving_default/reconstruct, encode, decode, "
            "synthesize. The waveform outputs are rendered in the graph by --vocoder (the shipped "
            "vocoder where it fits RUN's features, else Griffin-Lim). Runs under the TensorFlow "
            "backend whatever backend trained RUN."
        ),
    )
    add_run_argument(parser, "run directory (model.keras, frontend.json, stats.npz)")
    parser.add_argument("--out", required=True, help="numeric version folder to write, e.g. exported/timbre/1")
    parser.add_argument("--overwrite", action="store_true", help="replace a different model already in --out")
    parser.add_argument(
        "--griffin-lim-iters",
        type=int,
        default=None,
        help="Griffin-Lim iterations of the waveform outputs, where Griffin-Lim renders them (default 32)",
    )
    add_vocoder_option(parser)  # a vocoder of other features: one line, exit 2 (a ValueError, cli.main)
    parser.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    from keras_timbre.export import saved_model as export

    iters = export.GRIFFIN_LIM_ITERS if args.griffin_lim_iters is None else args.griffin_lim_iters
    if iters < 0:
        raise ValueError(f"--griffin-lim-iters must be >= 0, got {iters}")
    started = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    try:
        path = export.export_run(
            args.run, args.out, overwrite=args.overwrite, griffin_lim_iters=iters, vocoder=args.vocoder
        )
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
    print(f"Waveform outputs rendered in the graph by {metadata.get('renderer', 'Griffin-Lim')}")
    return 0
