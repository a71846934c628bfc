"""The PyTorch side of :mod:`im2col_net.app.bench`: the same model, weights, data and step.

PyTorch is optional; :func:`make_torch_step` reports why it is unavailable instead of
failing.
"""

from __future__ import annotations

import numpy as np

from ..layers import Conv2D, Flatten, Linear, MaxPool2D, ReLU

__all__ = ["make_torch_step", "torch_model_from"]


def torch_model_from(model, torch):
    """A ``torch.nn.Sequential`` mirroring ``model`` layer by layer, weights copied.

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
            w = layer.params["weight"]
            module = nn.Conv2d(layer.in_channels, layer.out_channels, g.kernel,
                               stride=g.stride, padding=(top, left), dilation=g.dilation,
                               bias="bias" in layer.params,
                               padding_mode=layer.padding_mode)   # torch's names
        elif isinstance(layer, Linear):
            w = layer.params["weight"]
            module = nn.Linear(layer.in_features, layer.out_features,
                               bias="bias" in layer.params)
        elif isinstance(layer, ReLU):
            module, w = nn.ReLU(), None
        elif isinstance(layer, MaxPool2D):
            g = layer.geometry
            module, w = nn.MaxPool2d(g.kernel, g.stride, (g.padding[0], g.padding[2])), None
        elif isinstance(layer, Flatten):
            module, w = nn.Flatten(), None
        else:
            raise ValueError(f"bench: cannot mirror {layer!r} in torch")
        if w is not None:
            with torch.no_grad():
                module.weight.copy_(torch.from_numpy(np.ascontiguousarray(w)))
                if "bias" in layer.params:
                    module.bias.copy_(torch.from_numpy(layer.params["bias"].copy()))
        layers.append(module)
    return nn.Sequential(*layers)


def make_torch_step(model, x, labels, threads, lr):
    """``(step, status)``: a closure running the torch training step (returns the loss)
    and ``"ok"``; or ``(None, reason)`` when torch cannot be imported."""
    try:
        import torch
    except Exception as exc:  # noqa: BLE001 - any import failure means "no torch"
        return None, f"not available ({type(exc).__name__}: {exc})"
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
