"""``im2col-net export MODEL.npz OUT.onnx``: write a saved model as an ONNX file."""

from __future__ import annotations

NAME = "export"
HELP = "export a saved model (model.npz) to an ONNX file"


def add_arguments(parser):
    parser.add_argument("model", metavar="MODEL.npz", help="a model file (or checkpoint)")
    parser.add_argument("output", metavar="OUT.onnx", help="the ONNX file to write")
    parser.add_argument("--input-shape", default="1,28,28", metavar="C,H,W",
                        help="per-sample input shape (default 1,28,28); the batch is dynamic")
    parser.add_argument("--opset", type=int, default=None, metavar="N",
                        help="ONNX opset (default: the newest the installed onnx supports; "
                             "13 or later)")


def run(args) -> int:
    from . import CliError
    from .evaluate_cmd import load_model_or_fail
    from .import_cmd import onnx_module_or_fail, parse_shape

    shape = parse_shape(args.input_shape)
    onnx_api = onnx_module_or_fail()
    model = load_model_or_fail(args.model)
    try:
        proto = onnx_api.export(model, args.output, input_shape=shape, opset=args.opset)
    except onnx_api.OnnxError as exc:
        raise CliError(str(exc)) from exc
    except OSError as exc:
        raise CliError(f"{args.output}: cannot write: {exc}") from exc
    opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    print(f"wrote {args.output} (opset {opset}, {len(proto.graph.node)} nodes, input "
          f"(N, {', '.join(map(str, shape))}))")
    return 0
