"""Query an exported keras-timbre model through TF Serving's gRPC predict API.

Start the server on the export (see docs/export.md), e.g.

    docker run --rm -p 8500:8500 \
        -v "$PWD/exported/timbre:/models/timbre" -e MODEL_NAME=timbre tensorflow/serving

then embed notes:

    pip install tensorflow-serving-api   # or: pip install "keras-timbre[serving]"
    python examples/serving_grpc.py note1.wav note2.wav --signature encode

gRPC carries the batch as one binary `TensorProto` per named input (no JSON
floats), which is the cheaper transport for 64,000-sample notes.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import serving_rest  # noqa: E402  (the sibling example: input names, audio loading)

DEFAULT_SERVER = "localhost:8500"


def predict_request(
    batch, model_name: str = "timbre", signature_name: str = "serving_default", version: int | None = None
):
    """A `PredictRequest` for a batch of waveforms (batch, samples) or latents (batch, latent_dim).

    Args:
        batch: float array; waveforms at the model's sample rate for
            `serving_default`, `reconstruct` and `encode`, latents for
            `decode` and `synthesize`.
        model_name: The served model's name (`--model_name`, `MODEL_NAME`).
        signature_name: The signature to run.
        version: A version folder to pin, or None for the latest.

    Example:
    >>> request = predict_request(np.zeros((2, 16000)), signature_name="encode")  # doctest: +SKIP
    >>> request.inputs["waveform"].tensor_shape.dim[1].size  # doctest: +SKIP
    16000
    """
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    input_name, batch = serving_rest.named_batch(batch, signature_name)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    if version is not None:
        request.model_spec.version.value = int(version)
    request.inputs[input_name].CopyFrom(tf.make_tensor_proto(batch, dtype=tf.float32))
    return request


def parse_response(response) -> dict[str, np.ndarray]:
    """Named numpy arrays from a `PredictResponse`."""
    import tensorflow as tf

    return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}


def predict(server: str, request, timeout: float = 60.0) -> dict[str, np.ndarray]:
    """Sends `request` to a TF Serving gRPC endpoint (host:port) and returns the named outputs."""
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    # A 64-note batch of 4 s waveforms is ~16 MB: raise gRPC's 4 MB default.
    limit = 256 * 1024 * 1024
    options = [("grpc.max_send_message_length", limit), ("grpc.max_receive_message_length", limit)]
    with grpc.insecure_channel(server, options=options) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        return parse_response(stub.Predict(request, timeout=timeout))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("audio", nargs="+", help="audio files (any rate; resampled to --sample-rate)")
    parser.add_argument("--server", default=DEFAULT_SERVER, help=f"host:port (default {DEFAULT_SERVER})")
    parser.add_argument("--model-name", default="timbre")
    parser.add_argument("--signature", default="encode", choices=serving_rest.WAVEFORM_SIGNATURES)
    parser.add_argument("--sample-rate", type=int, default=16000, help="the model's rate (frontend.json)")
    args = parser.parse_args(argv)
    request = predict_request(
        serving_rest.load_waveforms(args.audio, args.sample_rate), args.model_name, args.signature
    )
    import grpc

    try:
        outputs = predict(args.server, request)
    except grpc.RpcError as error:
        # Bad input comes back as INVALID_ARGUMENT with the graph's message; no server as UNAVAILABLE.
        print(f"serving_grpc: {args.server}: {error.code().name}: {error.details()}", file=sys.stderr)
        return 1
    for name, value in outputs.items():
        print(f"{name}: shape {value.shape}\n{np.array2string(value, precision=3, threshold=20)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
