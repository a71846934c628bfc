"""``im2col-net import MODEL.onnx OUT.npz``: turn an ONNX file into a model file."""

from __future__ import annotations

NAME = "import"
HELP = "import an ONNX file as a model file (model.npz) of this engine"


def parse_shape(text):
    """``"1,28,28"`` (or ``1x28x28``) -> ``(1, 28, 28)``; CliError otherwise."""
    from . import CliError

    try:
        shape = tuple(int(part) for part in text.replace("x", ",").split(","))
    except ValueError:
        shape = ()
    if not shape or min(shape) < 1:
        raise CliError(f"--input-shape must be positive ints like 1,28,28, got {text!r}")
    return shape


def onnx_module_or_fail():
    """:mod:`im2col_net.onnx` once the onnx package is known to be importable."""
    from ... import onnx as onnx_api
    from . import CliError

    try:
        onnx_api.deps.require_onnx()
    except ImportError as exc:
        raise CliError(str(exc)) from exc
    return onnx_api


def load_onnx_or_fail(path, input_shape=None, *, allow_nonfinite=False):
    """:func:`im2col_net.onnx.load` with user-facing errors turned into CliError."""
    import os

    from . import CliError

    if not os.path.isfile(path):
        raise CliError(f"{path}: no such model file")
    onnx_api = onnx_module_or_fail()
    try:
        return onnx_api.load(path, input_shape=input_shape, allow_nonfinite=allow_nonfinite)
    except onnx_api.OnnxError as exc:
        raise CliError(str(exc)) from exc


def add_arguments(parser):
    parser.add_argument("model", metavar="MODEL.onnx", help="the ONNX file to import")
    parser.add_argument("output", metavar="OUT.npz", help="the model file to write")
    parser.add_argument("--input-shape", default=None, metavar="C,H,W",
                        help="per-sample input shape, needed only when the file leaves it "
                             "symbolic")


def run(args) -> int:
    from ...serialization import save_model
    from . import CliError

    shape = None if args.input_shape is None else parse_shape(args.input_shape)
    model = load_onnx_or_fail(args.model, shape)
    try:
        save_model(model, args.output)
    except OSError as exc:
        raise CliError(f"{args.output}: cannot write: {exc}") from exc
    print(f"wrote {args.output} ({type(model).__name__}, {model.parameter_count():,} "
          f"parameters)")
    return 0
