"""Query an exported keras-timbre model through TF Serving's REST predict API.

Start the server on the export (see docs/export.md), e.g.

    docker run --rm -p 8501:8501 \
        -v "$PWD/exported/timbre:/models/timbre" -e MODEL_NAME=timbre tensorflow/serving

then embed notes:

    python examples/serving_rest.py note1.wav note2.wav --signature encode
    python examples/serving_rest.py note.wav --form inputs --print-body | head -c 300

The client needs numpy and soundfile only (librosa if the files need
resampling): the log-mel frontend runs inside the served graph, so raw samples
at the model's rate are all a request carries. The request body has one of
TF Serving's two JSON forms:

- row ("instances"): a list with one entry per example,
  `{"signature_name": "encode", "instances": [{"waveform": [0.0, 0.1, ...]}, ...]}`;
  the answer is `{"predictions": [{"z_mean": [...], "z_log_var": [...]}, ...]}`.
- columnar ("inputs"): named batched inputs,
  `{"signature_name": "encode", "inputs": {"waveform": [[0.0, 0.1, ...], ...]}}`;
  the answer is `{"outputs": {"z_mean": [[...], ...], "z_log_var": [[...], ...]}}`.

Rows must have equal lengths in one request (pad them, or send one note per
request); the graph itself crops or zero-pads each batch to the model's note
length.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request

import numpy as np

DEFAULT_URL = "http://localhost:8501/v1/models/timbre:predict"
WAVEFORM_SIGNATURES = ("serving_default", "reconstruct", "encode")
LATENT_SIGNATURES = ("decode", "synthesize")


def request_body(batch, signature_name: str = "serving_default", form: str = "instances") -> dict:
    """The JSON body of a predict request for a batch of waveforms or latents.

    Args:
        batch: float array (batch, samples) of waveforms for `serving_default`,
            `reconstruct` and `encode`, or (batch, latent_dim) latents for
            `decode` and `synthesize`.
        signature_name: The signature to run.
        form: "instances" (row form) or "inputs" (columnar form).

    Returns:
        A dict to send as JSON.

    Example:
    >>> body = request_body(np.zeros((2, 3)), "encode", form="inputs")
    >>> body["inputs"]["waveform"]
    [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    """
    input_name, batch = named_batch(batch, signature_name)
    rows = batch.tolist()
    if form == "instances":
        return {"signature_name": signature_name, "instances": [{input_name: row} for row in rows]}
    if form == "inputs":
        return {"signature_name": signature_name, "inputs": {input_name: rows}}
    raise ValueError(f"form must be 'instances' or 'inputs', got {form!r}")


def named_batch(batch, signature_name: str) -> tuple[str, np.ndarray]:
    """The signature's input name, and `batch` checked as a float32 (batch, values) array."""
    if signature_name in WAVEFORM_SIGNATURES:
        input_name = "waveform"
    elif signature_name in LATENT_SIGNATURES:
        input_name = "z"
    else:
        raise ValueError(
            f"signature_name must be one of {WAVEFORM_SIGNATURES + LATENT_SIGNATURES}, got {signature_name!r}"
        )
    batch = np.asarray(batch, np.float32)
    if batch.ndim != 2:
        raise ValueError(f"{input_name}: expected a 2-D (batch, values) array, got shape {batch.shape}")
    return input_name, batch


def parse_response(response: dict) -> dict[str, np.ndarray]:
    """Named float arrays, batch first, from a predict response of either form.

    Example:
    >>> parse_response({"predictions": [{"z_mean": [1.0, 2.0]}]})["z_mean"].shape
    (1, 2)
    """
    if "error" in response:
        raise RuntimeError(f"TF Serving error: {response['error']}")
    if "outputs" in response:
        outputs = response["outputs"]
        return {k: np.asarray(v, np.float32) for k, v in outputs.items()}
    if "predictions" in response:
        rows = response["predictions"]
        if rows and isinstance(rows[0], dict):
            return {k: np.asarray([row[k] for row in rows], np.float32) for k in rows[0]}
        raise ValueError("Single-output 'predictions' have no names; every keras-timbre signature names its outputs")
    raise ValueError(f"Not a predict response: keys {sorted(response)}")


def predict(url: str, body: dict, timeout: float = 60.0) -> dict[str, np.ndarray]:
    """POSTs `body` to a TF Serving predict URL and returns the named outputs."""
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return parse_response(json.loads(reply.read()))
    except urllib.error.HTTPError as error:
        # TF Serving reports bad input (wrong shape, empty batch, NaN samples) as HTTP 400 + JSON.
        raise RuntimeError(f"{url}: HTTP {error.code}: {error.read().decode(errors='replace')}") from None
    except urllib.error.URLError as error:
        raise RuntimeError(f"cannot reach {url} ({error.reason}): is TF Serving running? See docs/export.md") from None


def load_waveforms(paths, sample_rate: int) -> np.ndarray:
    """Mono float32 waveforms at `sample_rate`, zero-padded to the longest."""
    import soundfile

    waveforms = []
    for path in paths:
        audio, rate = soundfile.read(path, dtype="float32", always_2d=True)
        audio = audio.mean(axis=1)
        if rate != sample_rate:
            import librosa

            audio = librosa.resample(audio, orig_sr=rate, target_sr=sample_rate)
        waveforms.append(audio)
    length = max(len(w) for w in waveforms)
    return np.stack([np.pad(w, (0, length - len(w))) for w in waveforms]).astype(np.float32)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("audio", nargs="+", help="audio files (any rate; resampled to --sample-rate)")
    parser.add_argument("--url", default=DEFAULT_URL, help=f"predict URL (default {DEFAULT_URL})")
    parser.add_argument("--signature", default="encode", choices=WAVEFORM_SIGNATURES)
    parser.add_argument("--form", default="instances", choices=("instances", "inputs"))
    parser.add_argument("--sample-rate", type=int, default=16000, help="the model's rate (frontend.json)")
    parser.add_argument("--print-body", action="store_true", help="print the JSON body instead of sending it")
    args = parser.parse_args(argv)
    body = request_body(load_waveforms(args.audio, args.sample_rate), args.signature, args.form)
    if args.print_body:
        try:
            print(json.dumps(body))
        except BrokenPipeError:  # e.g. piped into `head`
            pass
        return 0
    try:
        outputs = predict(args.url, body)
    except RuntimeError as error:
        print(f"serving_rest: {error}", file=sys.stderr)
        return 1
    for name, value in outputs.items():
        print(f"{name}: shape {value.shape}\n{np.array2string(value, precision=3, threshold=20)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
