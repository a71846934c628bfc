"""Pictures of a training run: learning curves, first-layer filters, confusion matrix and
misclassified images, written as PNG files.

Needs matplotlib (``pip install "im2col_net[plot]"``), imported only when a picture is
drawn; without it every function raises ImportError saying so. Figures are drawn with
matplotlib's object interface on the Agg canvas (no pyplot, no global backend change,
no window), so plotting works on a headless machine and inside other programs.

Every ``plot_*`` function takes plain arrays or records, writes one PNG atomically
(temporary file, then rename) and returns its path; :func:`plot_run` reads a run
directory written by :func:`im2col_net.training.fit` and draws all four. Picture sizes
in pixels are ``round(inches * dpi)`` for the sizes given in each docstring.
"""

from __future__ import annotations

import math
import os

import numpy as np

from ..safeio import atomic_file

__all__ = [
    "PLOT_FILES",
    "check_available",
    "plot_curves",
    "plot_filters",
    "plot_confusion",
    "plot_misclassified",
    "plot_run",
    "first_conv_weight",
]

# The files plot_run writes, by picture.
PLOT_FILES = {
    "curves": "curves.png",
    "filters": "filters.png",
    "confusion": "confusion.png",
    "misclassified": "misclassified.png",
}

_HEADER_IN = 0.8          # room for a figure title above an image grid (inches)
_FILTER_CELL_IN = 0.9     # one filter tile
_FILTER_COLUMNS = 8
_IMAGE_CELL_IN = (1.5, 1.75)  # one misclassified image with its two-line caption
_IMAGE_COLUMNS = 8
_MIN_WIDTH_IN = 4.4       # narrow grids still fit their two-line title


# -- matplotlib plumbing ------------------------------------------------------------------
def _matplotlib():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(
            "im2col_net.app.plotting needs matplotlib; install it with "
            "`pip install \"im2col_net[plot]\"` (or `pip install matplotlib`)"
        ) from exc
    return Figure, FigureCanvasAgg


def check_available() -> None:
    """Raise ImportError (saying how to install it) unless matplotlib can be imported."""
    _matplotlib()


def _figure(width_in: float, height_in: float, dpi: int, **kwargs):
    """A Figure of exactly ``round(width_in*dpi) x round(height_in*dpi)`` pixels."""
    figure_cls, canvas_cls = _matplotlib()
    width_px, height_px = round(width_in * dpi), round(height_in * dpi)
    # Agg truncates inches*dpi to whole pixels; a quarter pixel more keeps float
    # rounding from losing one.
    fig = figure_cls(figsize=((width_px + 0.25) / dpi, (height_px + 0.25) / dpi), dpi=dpi,
                     **kwargs)
    canvas_cls(fig)
    return fig


def _save(fig, path) -> str:
    """Write ``fig`` as PNG to ``path`` via a temporary file and a rename."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_file(path) as handle:
        fig.savefig(handle, format="png", dpi=fig.dpi)
    return path


def _check_dpi(dpi, owner):
    if not isinstance(dpi, (int, np.integer)) or isinstance(dpi, bool) or not 10 <= dpi <= 600:
        raise ValueError(f"{owner}: dpi must be an int in [10, 600], got {dpi!r}")
    return int(dpi)


def _grid(count: int, columns: int) -> tuple[int, int]:
    cols = max(1, min(count, columns))
    return max(1, math.ceil(count / cols)), cols


def _grid_axes(fig, rows, cols, cell_w, cell_h, header, pad=0.08):
    """Axes of a ``rows x cols`` grid of ``cell_w x cell_h`` inch cells under a header."""
    width, height = fig.get_size_inches()
    margin = (width - cols * cell_w) / 2
    axes = []
    for r in range(rows):
        for c in range(cols):
            left = (margin + c * cell_w + pad) / width
            bottom = (height - header - (r + 1) * cell_h + pad) / height
            ax = fig.add_axes((left, bottom, (cell_w - 2 * pad) / width,
                               (cell_h - 2 * pad) / height))
            ax.set_xticks([])
            ax.set_yticks([])
            axes.append(ax)
    return axes


# -- learning curves ----------------------------------------------------------------------
def _series(records, kind, x_key, y_key, scale=1.0):
    points = [(r[x_key], r[y_key]) for r in records
              if r.get("kind") == kind and isinstance(r.get(x_key), (int, float))
              and isinstance(r.get(y_key), (int, float))]
    points.sort()
    return [p[0] for p in points], [p[1] * scale for p in points]


def plot_curves(records, path, *, dpi: int = 100) -> str:
    """Loss, accuracy and learning rate over the epochs of a run, in three panels.

    ``records``: metrics-log records as dicts (:func:`im2col_net.training.read_metrics`;
    format in :mod:`im2col_net.training.metrics`). Step records (training loss and
    accuracy averaged over the last few updates, at fractional epochs) are drawn as thin
    lines; epoch records as markers at the end of each epoch: training means over the
    epoch and the test-set values. Accuracies are shown in percent. Other kinds are
    ignored; missing (null) values are skipped.

    Writes a 15 x 4.5 inch PNG (1500 x 450 pixels at ``dpi=100``) to ``path`` and
    returns ``path``. Raises ValueError when there is no step or epoch record to draw.
    """
    dpi = _check_dpi(dpi, "plot_curves")
    records = [r for r in records if isinstance(r, dict)]
    if not any(r.get("kind") in ("step", "epoch") for r in records):
        raise ValueError("plot_curves: expected metrics records of kind 'step' or 'epoch', "
                         f"got {len(records)} record(s) of neither kind")
    fig = _figure(15, 4.5, dpi, layout="constrained")
    loss_ax, acc_ax, lr_ax = fig.subplots(1, 3)
    panels = (
        (loss_ax, "loss", "cross-entropy loss", 1.0,
         [("step", "loss", "train (per step)"), ("epoch", "train_loss", "train (epoch mean)"),
          ("epoch", "test_loss", "test")]),
        (acc_ax, "accuracy", "accuracy (%)", 100.0,
         [("step", "accuracy", "train (per step)"),
          ("epoch", "train_accuracy", "train (epoch mean)"),
          ("epoch", "test_accuracy", "test")]),
    )
    styles = {"train (per step)": dict(color="tab:blue", alpha=0.45, linewidth=1.0),
              "train (epoch mean)": dict(color="tab:blue", marker="o", linewidth=1.8),
              "test": dict(color="tab:red", marker="s", linewidth=1.8)}
    for ax, title, ylabel, scale, series in panels:
        for kind, key, label in series:
            xs, ys = _series(records, kind, "epoch", key, scale)
            if xs:
                ax.plot(xs, ys, label=label, **styles[label])
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        if ax.lines:
            ax.legend(loc="best", fontsize="small")
    if _positive(loss_ax):
        from matplotlib.ticker import FormatStrFormatter

        loss_ax.set_yscale("log")  # late-training changes stay visible
        loss_ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        values = [y for line in loss_ax.lines for y in line.get_ydata()]
        if max(values) < 10 * min(values):  # less than a decade: label the minor ticks too
            loss_ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
    xs, ys = _series(records, "step", "epoch", "lr")
    if not xs:
        xs, ys = _series(records, "epoch", "epoch", "lr")
    if xs:
        lr_ax.plot(xs, ys, color="tab:green")
    lr_ax.set_title("learning rate")
    lr_ax.set_xlabel("epoch")
    lr_ax.set_ylabel("lr")
    lr_ax.grid(True, alpha=0.3)
    return _save(fig, path)


def _positive(ax) -> bool:
    """True when every plotted value is positive (a log axis can show them all)."""
    values = [y for line in ax.lines for y in line.get_ydata()]
    return bool(values) and min(values) > 0


# -- first-layer filters ------------------------------------------------------------------
def first_conv_weight(model) -> np.ndarray | None:
    """The ``weight (Cout, Cin, kh, kw)`` of the first Conv2D met walking ``model``
    depth first (its own layers in order), or None when it has none."""
    from ..layers.conv import Conv2D
    from ..serialization import named_layers

    for _, layer in named_layers(model):
        if isinstance(layer, Conv2D):
            return layer.params["weight"]
    return None


def plot_filters(weight, path, *, max_filters: int = 64, dpi: int = 100) -> str:
    """The filters of a convolution as a grid of small images.

    ``weight (Cout, Cin, kh, kw)`` float (any float dtype). Each filter is scaled by its
    own largest ``|w|`` and drawn with a diverging colour map (red positive, blue
    negative, white zero), so the pattern of each is visible whatever its norm. One tile
    per filter when ``Cin == 1`` (8 per row) or ``Cin == 3`` (drawn as RGB, scaled to
    [0, 1]); otherwise one row per filter and one column per input channel. At most
    ``max_filters`` filters are drawn (the first ones).

    Size: ``max(cols * 0.9 + 0.4, 4.4)`` by ``rows * 0.9 + 0.8`` inches (a 32-filter
    single-channel layer: 8 x 4 tiles, 760 x 440 pixels at ``dpi=100``). Returns ``path``.
    """
    dpi = _check_dpi(dpi, "plot_filters")
    weight = np.asarray(weight)
    if weight.ndim != 4 or weight.dtype.kind != "f" or 0 in weight.shape:
        raise ValueError(f"plot_filters: expected a float weight (Cout, Cin, kh, kw), got "
                         f"shape {weight.shape} dtype {weight.dtype}")
    if not isinstance(max_filters, int) or max_filters < 1:
        raise ValueError(f"plot_filters: max_filters must be a positive int, got {max_filters!r}")
    cout, cin, kh, kw = weight.shape
    shown = weight[:max_filters].astype(np.float64)
    count = len(shown)
    rgb = cin == 3
    if cin in (1, 3):
        rows, cols = _grid(count, _FILTER_COLUMNS)
        tiles = [(k, None) for k in range(count)]
    else:
        rows, cols = count, cin
        tiles = [(k, c) for k in range(count) for c in range(cin)]
    fig = _figure(max(cols * _FILTER_CELL_IN + 0.4, _MIN_WIDTH_IN),
                  rows * _FILTER_CELL_IN + _HEADER_IN, dpi)
    axes = _grid_axes(fig, rows, cols, _FILTER_CELL_IN, _FILTER_CELL_IN, _HEADER_IN)
    for ax, (k, c) in zip(axes, tiles, strict=False):  # spare cells are blanked below
        w = shown[k]
        if rgb:
            low, high = w.min(), w.max()
            image = (w - low) / (high - low) if high > low else np.full_like(w, 0.5)
            ax.imshow(image.transpose(1, 2, 0), interpolation="nearest")
        else:
            scale = np.abs(w).max() or 1.0
            ax.imshow(w[0 if c is None else c] / scale, cmap="RdBu_r", vmin=-1, vmax=1,
                      interpolation="nearest")
    for ax in axes[len(tiles):]:
        ax.set_axis_off()
    more = f" (first {count} of {cout})" if count < cout else ""
    how = "RGB, scaled to [0, 1]" if rgb else "each scaled to its max |w|: red > 0 > blue"
    fig.suptitle(f"first conv layer: {cout} filters {cin}x{kh}x{kw}{more}\n{how}",
                 fontsize="medium", y=1 - 0.1 / fig.get_size_inches()[1])
    return _save(fig, path)


# -- confusion matrix ---------------------------------------------------------------------
def plot_confusion(matrix, class_names, path, *, dpi: int = 100, title: str | None = None) -> str:
    """A confusion matrix as a heat map with the count in every cell.

    ``matrix (K, K)`` integer counts, row = true class, column = predicted class (as
    :func:`im2col_net.training.confusion_matrix` returns). Colours show each row
    normalised to 1 (the fraction of a class predicted as each class), so the diagonal
    reads as per-class recall. ``class_names``: K labels (None for ``0..K-1``). The
    default title gives the overall accuracy.

    Size: ``0.65*K + 3.0`` by ``0.65*K + 2.6`` inches (K = 10: 950 x 910 pixels at
    ``dpi=100``). Returns ``path``.
    """
    dpi = _check_dpi(dpi, "plot_confusion")
    matrix = np.asarray(matrix)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] == 0 \
            or matrix.dtype.kind not in "iu" or (matrix < 0).any():
        raise ValueError(f"plot_confusion: expected non-negative integer counts (K, K), got "
                         f"shape {matrix.shape} dtype {matrix.dtype}")
    k = matrix.shape[0]
    names = [str(i) for i in range(k)] if class_names is None else [str(n) for n in class_names]
    if len(names) != k:
        raise ValueError(f"plot_confusion: expected {k} class names for a {k}x{k} matrix, "
                         f"got {len(names)}")
    totals = matrix.sum(axis=1, keepdims=True)
    share = matrix / np.maximum(totals, 1)
    fig = _figure(0.65 * k + 3.0, 0.65 * k + 2.6, dpi, layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, shrink=0.8, label="fraction of the true class")
    for i in range(k):
        for j in range(k):
            if matrix[i, j]:
                ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center",
                        fontsize="small" if k <= 12 else "x-small",
                        color="white" if share[i, j] > 0.5 else "black")
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    ax.set_xticklabels(names, rotation=45 if max(map(len, names)) > 2 else 0, ha="right"
                       if max(map(len, names)) > 2 else "center")
    ax.set_yticklabels(names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    total = int(matrix.sum())
    if title is None:
        accuracy = f"{100 * np.trace(matrix) / total:.2f}%" if total else "n/a"
        title = f"confusion matrix: {total:,} images, accuracy {accuracy}"
    ax.set_title(title)
    return _save(fig, path)


# -- misclassified images -----------------------------------------------------------------
def plot_misclassified(images, true, pred, path, class_names=None, *, confidence=None,
                       max_images: int = 32, dpi: int = 100, title: str | None = None) -> str:
    """A grid of images with their true and predicted labels.

    ``images (N, 1, H, W)``, ``(N, H, W)`` or ``(N, 3, H, W)`` float; ``true`` and
    ``pred`` ``(N,)`` ints (every image is drawn, whether or not the two differ: pass
    the misclassified ones). ``confidence (N,)``: the predicted class's probability,
    shown in the caption when given. ``class_names``: labels by class index (None: the
    indices). Grayscale images in [0, 1] are drawn on that fixed scale, others scaled
    per image. At most ``max_images`` (the first) are drawn; with none a notice is drawn.
    ``title`` replaces the default heading ("misclassified images").

    Size: ``max(cols * 1.5, 4.4)`` by ``rows * 1.75 + 0.8`` inches with 8 columns (32
    images: 1200 x 780 pixels at ``dpi=100``). Returns ``path``.
    """
    dpi = _check_dpi(dpi, "plot_misclassified")
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim != 4 or images.shape[1] not in (1, 3) or images.dtype.kind != "f":
        raise ValueError(f"plot_misclassified: expected float images (N, 1, H, W), (N, H, W) "
                         f"or (N, 3, H, W), got shape {images.shape} dtype {images.dtype}")
    n = len(images)
    true, pred = np.asarray(true), np.asarray(pred)
    for name, labels in (("true", true), ("pred", pred)):
        if labels.shape != (n,) or (n and labels.dtype.kind not in "iu"):
            raise ValueError(f"plot_misclassified: expected {name} labels as ints of shape "
                             f"({n},), got shape {labels.shape} dtype {labels.dtype}")
    if confidence is not None:
        confidence = np.asarray(confidence, dtype=np.float64)
        if confidence.shape != (n,):
            raise ValueError(f"plot_misclassified: expected confidence of shape ({n},), got "
                             f"{confidence.shape}")
    if not isinstance(max_images, int) or max_images < 1:
        raise ValueError(f"plot_misclassified: max_images must be a positive int, got "
                         f"{max_images!r}")

    def label(index):
        index = int(index)
        if class_names is None or not 0 <= index < len(class_names):
            return str(index)
        name = str(class_names[index])
        return name if name == str(index) else f"{index} {name}"

    count = min(n, max_images)
    rows, cols = _grid(count, _IMAGE_COLUMNS)
    cell_w, cell_h = _IMAGE_CELL_IN
    fig = _figure(max(cols * cell_w, _MIN_WIDTH_IN), rows * cell_h + _HEADER_IN, dpi)
    if count == 0:
        fig.text(0.5, 0.5, "no misclassified images", ha="center", va="center",
                 fontsize="large")
        return _save(fig, path)
    axes = _grid_axes(fig, rows, cols, cell_w, cell_h, _HEADER_IN, pad=0.1)
    fixed = images.shape[1] == 1 and images.min() >= 0 and images.max() <= 1
    for i, ax in enumerate(axes):
        if i >= count:
            ax.set_axis_off()
            continue
        image = images[i].astype(np.float64)
        if image.shape[0] == 3:
            low, high = image.min(), image.max()
            image = (image - low) / (high - low) if high > low else np.zeros_like(image)
            ax.imshow(image.transpose(1, 2, 0), interpolation="nearest")
        else:
            limits = dict(vmin=0.0, vmax=1.0) if fixed else {}
            ax.imshow(image[0], cmap="gray", interpolation="nearest", **limits)
        caption = f"true {label(true[i])}\npred {label(pred[i])}"
        if confidence is not None:
            caption += f" ({100 * confidence[i]:.0f}%)"
        ax.set_title(caption, fontsize="small",
                     color="tab:red" if true[i] != pred[i] else "black")
    more = f" (first {count} of {n})" if count < n else ""
    fig.suptitle(title or f"misclassified images{more}", fontsize="medium",
                 y=1 - 0.15 / fig.get_size_inches()[1])
    return _save(fig, path)


# -- a whole run --------------------------------------------------------------------------
def _run_settings(records) -> dict:
    """The ``train`` command's settings from the log's start event (empty if absent)."""
    for record in records:
        if record.get("kind") == "event" and record.get("event") == "start":
            meta = (record.get("run") or {}).get("meta")
            if isinstance(meta, dict) and isinstance(meta.get("settings"), dict):
                return meta["settings"]
    return {}


def plot_run(run_dir, *, out_dir=None, dataset=None, data_dir=None, limit=None,
             batch_size: int = 256, max_images: int = 32, dpi: int = 100,
             log=None) -> dict[str, str]:
    """Draw the pictures of a run directory written by :func:`im2col_net.training.fit`.

    From ``run_dir/metrics.jsonl``: the learning curves (:func:`plot_curves`). From
    ``run_dir/model.npz`` (or ``checkpoint.npz`` of an unfinished run), evaluated on the
    test split of ``dataset``: the first convolution's filters (:func:`plot_filters`),
    the confusion matrix (:func:`plot_confusion`) and the misclassified test images,
    most confident mistakes first (:func:`plot_misclassified`).

    ``dataset`` and ``limit`` default to the run's own settings when ``im2col-net train``
    wrote it (else ``"mnist"`` and the whole test set). ``out_dir`` defaults to
    ``run_dir``; file names are :data:`PLOT_FILES`. ``log(message)`` receives a line
    for every picture skipped and why (a model without convolution, no metrics log).

    Returns ``{picture: path}`` for the files written. Raises FileNotFoundError when
    ``run_dir`` holds neither a metrics log nor a model, ValueError (or the dataset
    loader's DataError) for data that does not fit the model.
    """
    from ..datasets import CLASS_NAMES, load_dataset
    from ..serialization import load_model
    from ..training import CHECKPOINT_NAME, METRICS_NAME, MODEL_NAME, read_metrics
    from ..training.evaluation import confusion_matrix, predict_proba

    check_available()  # fail early, before any slow work, when matplotlib is missing
    run_dir = os.fspath(run_dir)
    if not os.path.isdir(run_dir):
        raise FileNotFoundError(f"plot_run: {run_dir} is not a directory")
    out_dir = run_dir if out_dir is None else os.fspath(out_dir)
    say = log or (lambda message: None)
    written = {}

    def target(name):
        return os.path.join(out_dir, PLOT_FILES[name])

    metrics_path = os.path.join(run_dir, METRICS_NAME)
    records = read_metrics(metrics_path, strict=False) if os.path.isfile(metrics_path) else []
    if any(r.get("kind") in ("step", "epoch") for r in records):
        written["curves"] = plot_curves(records, target("curves"), dpi=dpi)
    else:
        say(f"no learning curves: {metrics_path} is missing or holds no step/epoch records")

    model_path = next((p for p in (os.path.join(run_dir, MODEL_NAME),
                                   os.path.join(run_dir, CHECKPOINT_NAME))
                       if os.path.isfile(p)), None)
    if model_path is None:
        if not written:
            raise FileNotFoundError(f"plot_run: {run_dir} holds neither {METRICS_NAME} nor "
                                    f"{MODEL_NAME} / {CHECKPOINT_NAME}")
        say(f"no model pictures: {run_dir} holds neither {MODEL_NAME} nor {CHECKPOINT_NAME}")
        return written
    model = load_model(model_path)
    weight = first_conv_weight(model)
    if weight is not None:
        written["filters"] = plot_filters(weight, target("filters"), dpi=dpi)
    else:
        say(f"no filter picture: {model_path} has no Conv2D layer")

    settings = _run_settings(records)
    dataset = dataset or settings.get("dataset") or "mnist"
    limit = limit if limit is not None else settings.get("limit")
    images, labels = load_dataset(dataset, "test", data_dir=data_dir, limit=limit)
    try:
        probabilities = predict_proba(model, images, batch_size)
    except ValueError as exc:
        raise ValueError(f"plot_run: the model in {model_path} does not fit {dataset} "
                         f"images {images.shape[1:]}: {exc}") from exc
    predictions = probabilities.argmax(axis=1)
    classes = probabilities.shape[1]
    if labels.max() >= classes:
        raise ValueError(f"plot_run: the model in {model_path} scores {classes} classes but "
                         f"{dataset} has labels up to {int(labels.max())}")
    names = list(CLASS_NAMES.get(dataset, ()))
    if len(names) != classes:
        names = [str(i) for i in range(classes)]
    matrix = confusion_matrix(labels, predictions, num_classes=classes)
    accuracy = 100 * np.trace(matrix) / len(labels)
    written["confusion"] = plot_confusion(
        matrix, names, target("confusion"), dpi=dpi,
        title=f"{dataset} test set: {len(labels):,} images, accuracy {accuracy:.2f}%")
    wrong = np.flatnonzero(predictions != labels)
    confidence = probabilities[wrong, predictions[wrong]]
    order = wrong[np.argsort(-confidence, kind="stable")]
    shown = min(len(order), max_images)
    written["misclassified"] = plot_misclassified(
        images[order], labels[order], predictions[order], target("misclassified"), names,
        confidence=probabilities[order, predictions[order]], max_images=max_images, dpi=dpi,
        title=f"{len(order):,} of {len(labels):,} {dataset} test images misclassified"
              + (f"\nthe {shown} most confident mistakes" if len(order) else ""))
    return written
