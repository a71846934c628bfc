"""The PyTorch side of :mod:`im2col_net.app.bench`: the same model, weights, data and step.

PyTorch is optional; :func:`make_torch_step` and :func:`make_torch_predict` report why it
is unavailable instead of failing.
"""

from __future__ import annotations

import numpy as np

from ..interop import to_torch_state_dict
from ..layers import Conv2D, Flatten, Linear, MaxPool2D, ReLU

__all__ = ["make_torch_step", "make_torch_predict", "torch_model_from",
           "torch_optimizer_from", "import_torch"]


def import_torch():
    """``(torch, None)``, or ``(None, reason)`` when torch cannot be imported."""
    try:
        import torch
    except Exception as exc:  # noqa: BLE001 - any import failure means "no torch"
        return None, f"not available ({type(exc).__name__}: {exc})"
    return torch, None


def torch_model_from(model, torch):
    """A ``torch.nn.Sequential`` mirroring ``model`` layer by layer, with ``model``'s
    weights loaded through :func:`im2col_net.interop.to_torch_state_dict` (strict keys).

    Supports the layers of :func:`im2col_net.models.convnet` (Conv2D without groups,
    with symmetric padding in any padding mode, ReLU, MaxPool2D, Flatten, Linear).
    """
    nn = torch.nn
    layers = []
    for layer in model.layers:
        if isinstance(layer, Conv2D):
            g = layer.geometry
            top, bottom, left, right = g.padding
            if top != bottom or left != right or layer.groups != 1 or layer.flip_kernel:
                raise ValueError(f"bench: cannot mirror {layer!r} in torch")
            module = nn.Conv2d(layer.in_channels, layer.out_channels, g.kernel,
                               stride=g.stride, padding=(top, left), dilation=g.dilation,
                               bias="bias" in layer.params,
                               padding_mode=layer.padding_mode)   # torch's names
        elif isinstance(layer, Linear):
            module = nn.Linear(layer.in_features, layer.out_features,
                               bias="bias" in layer.params)
        elif isinstance(layer, ReLU):
            module = nn.ReLU()
        elif isinstance(layer, MaxPool2D):
            g = layer.geometry
            module = nn.MaxPool2d(g.kernel, g.stride, (g.padding[0], g.padding[2]))
        elif isinstance(layer, Flatten):
            module = nn.Flatten()
        else:
            raise ValueError(f"bench: cannot mirror {layer!r} in torch")
        layers.append(module)
    net = nn.Sequential(*layers)
    state = {key: torch.from_numpy(np.ascontiguousarray(value))
             for key, value in to_torch_state_dict(model).items()}
    net.load_state_dict(state, strict=True)
    return net


def torch_optimizer_from(optimizer, parameters, torch):
    """The torch optimizer with the hyper-parameters of our ``optimizer`` (from its
    ``get_config()``): Adam, AdamW and SGD; ValueError for any other."""
    config = optimizer.get_config()
    cls = config["class"]
    if cls in ("Adam", "AdamW"):
        make = torch.optim.Adam if cls == "Adam" else torch.optim.AdamW
        return make(parameters, lr=config["lr"], betas=tuple(config["betas"]),
                    eps=config["eps"], weight_decay=config["weight_decay"],
                    amsgrad=config["amsgrad"])
    if cls == "SGD":
        return torch.optim.SGD(parameters, lr=config["lr"], momentum=config["momentum"],
                               dampening=config["dampening"],
                               weight_decay=config["weight_decay"],
                               nesterov=config["nesterov"])
    raise ValueError(f"bench: no torch twin for the optimizer {cls} (Adam, AdamW, SGD only)")


def make_torch_step(model, x, labels, threads, lr):
    """``(step, status)``: a closure running the torch training step (returns the loss)
    and ``"ok"``; or ``(None, reason)`` when torch cannot be imported."""
    torch, reason = import_torch()
    if torch is None:
        return None, reason
    if threads is not None:
        torch.set_num_threads(int(threads))
    net = torch_model_from(model, torch)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    tx = torch.from_numpy(np.ascontiguousarray(x))
    ty = torch.from_numpy(np.asarray(labels, dtype=np.int64))

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(net(tx), ty)
        loss.backward()
        optimizer.step()
        return loss.item()

    return step, f"ok (torch {torch.__version__}, {torch.get_num_threads()} threads)"


def make_torch_predict(model, x, threads):
    """``(run, status)``: ``run()`` is the torch twin's forward pass over the batch ``x``
    in eval mode under ``torch.inference_mode()``, returning the logits as a NumPy array;
    or ``(None, reason)`` when torch cannot be imported."""
    torch, reason = import_torch()
    if torch is None:
        return None, reason
    if threads is not None:
        torch.set_num_threads(int(threads))
    net = torch_model_from(model, torch).eval()
    tx = torch.from_numpy(np.ascontiguousarray(x))

    def run():
        with torch.inference_mode():
            return net(tx).numpy()

    return run, f"ok (torch {torch.__version__}, {torch.get_num_threads()} threads)"
