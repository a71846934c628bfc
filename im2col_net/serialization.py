"""Save and load models: architecture as JSON, arrays in one ``.npz`` file.

Architecture
    :func:`architecture_to_dict` turns a layer tree into
    ``{"class": name, "config": layer.get_config(), "children": [...]}`` (``children``
    only for containers); :func:`layer_from_dict` rebuilds it through the layer registry
    (class name -> class). Every class named in ``im2col_net.layers.__all__`` that is a
    :class:`~im2col_net.layers.base.Layer` is registered automatically; other classes
    call :func:`register_layer`.

Arrays
    Parameters come from ``named_parameters()``. Non-parameter state (e.g. batch-norm
    running statistics) is read from an optional ``buffers`` dict on each layer (name ->
    ndarray); :func:`named_buffers` walks the tree and names them ``"<child index>.<...>.
    <buffer name>"``, like Sequential's parameter names. A container whose ``buffers``
    merely re-exports its children's entries (keys starting with a child index) is not
    counted twice.

Model file (:func:`save_model`), an uncompressed ``.npz`` with these members:
    ``__format__``        0-d str ``"im2col_net.model"``
    ``__version__``       0-d int64 :data:`FORMAT_VERSION`
    ``__architecture__``  0-d str, the architecture JSON
    ``__dtype__``         0-d str, the parameter dtype name (``"float32"``)
    ``param/<name>``      every parameter
    ``buffer/<name>``     every buffer

Files are written to a temporary file in the target directory, fsync-ed and renamed
over the target (:func:`atomic_savez`), so a crash never leaves a half-written file, and
read by :func:`read_npz`, which never unpickles, so a file can never run code. Any
problem with a file's contents raises :class:`ModelFileError` naming the file.

Limits (checked from metadata, before the payload is read or anything is allocated)
    :func:`read_npz` refuses paths that are not regular files, files that are not zip
    archives (judged by their first bytes), members whose ``.npy`` header declares more
    than ``max_bytes`` (default :data:`DEFAULT_MAX_NPZ_BYTES`, 2 GiB) or a size that
    differs from the member's, archives whose members declare more than ``max_bytes``
    in total, and compressed members over 1 MiB inflating more than ``max_ratio``
    (default :data:`DEFAULT_MAX_COMPRESSION_RATIO`) times. The architecture JSON may nest
    at most :data:`MAX_JSON_DEPTH` levels. :func:`model_from_arrays` builds the layer
    tree with placeholder weights (:func:`~im2col_net.layers.base.deferred_init`), checks
    every declared parameter and buffer against the stored arrays' names and shapes,
    and only then installs the stored arrays: no weights are drawn or allocated for an
    architecture that does not fit the file.
Non-finite values
    A parameter or buffer holding NaN or infinity is refused (naming the array and the
    count of bad values) unless ``allow_nonfinite=True``.
"""

from __future__ import annotations

import contextlib
import json
import os
import zipfile
import zlib

import numpy as np

from .layers.base import Layer, deferred_init
from .safeio import (
    NPY_MAGIC,
    TEMP_TOKEN,
    GiB,
    MiB,
    atomic_file,
    check_json_depth,
    describe_bytes,
    open_regular,
    read_npy,
    signals_held,  # re-exported: the trainer and tests use it from here
)

__all__ = [
    "FORMAT_VERSION",
    "ModelFileError",
    "register_layer",
    "layer_registry",
    "architecture_to_dict",
    "architecture_to_json",
    "layer_from_dict",
    "model_from_json",
    "named_buffers",
    "named_layers",
    "load_buffers",
    "load_parameters",
    "atomic_savez",
    "signals_held",
    "stale_temp_files",
    "remove_stale_temp_files",
    "read_npz",
    "json_scalar",
    "json_from_array",
    "model_arrays",
    "model_from_arrays",
    "save_model",
    "load_model",
    "DEFAULT_MAX_NPZ_BYTES",
    "DEFAULT_MAX_COMPRESSION_RATIO",
    "MAX_JSON_DEPTH",
    "nonfinite_arrays",
    "refuse_nonfinite",
]

FORMAT_VERSION = 1
MODEL_FORMAT = "im2col_net.model"
PARAM_PREFIX = "param/"
BUFFER_PREFIX = "buffer/"

_EXTRA_LAYERS: dict[str, type] = {}

# Limits on what a model file may ask of the reader (see the module docstring).
DEFAULT_MAX_NPZ_BYTES = 2 * GiB
DEFAULT_MAX_COMPRESSION_RATIO = 100
_RATIO_CHECK_BYTES = MiB           # members this small are never refused for their ratio
MAX_JSON_DEPTH = 200               # brackets; a real architecture nests a few dozen
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a zip with members / an empty zip


class ModelFileError(ValueError):
    """A model or checkpoint file is unreadable, corrupt or inconsistent."""


# -- layer registry ---------------------------------------------------------------------
def register_layer(cls, name: str | None = None):
    """Make ``cls`` (a Layer subclass) rebuildable from JSON under ``name`` (default: its
    class name). Usable as a class decorator; returns ``cls``."""
    if not (isinstance(cls, type) and issubclass(cls, Layer)):
        raise ValueError(f"register_layer: expected a Layer subclass, got {cls!r}")
    _EXTRA_LAYERS[name or cls.__name__] = cls
    return cls


def layer_registry() -> dict[str, type]:
    """Class name -> class for every known layer: the Layer subclasses exported by
    ``im2col_net.layers`` (looked up on each call, so new exports are picked up) plus
    those passed to :func:`register_layer`."""
    from . import layers as layers_module

    registry = {}
    for name in getattr(layers_module, "__all__", ()):
        obj = getattr(layers_module, name, None)
        if isinstance(obj, type) and issubclass(obj, Layer):
            registry[obj.__name__] = obj
    registry.update(_EXTRA_LAYERS)
    return registry


# -- architecture <-> JSON ----------------------------------------------------------------
def architecture_to_dict(layer: Layer) -> dict:
    """The JSON-able description of ``layer`` and its sub-layers."""
    if not isinstance(layer, Layer):
        raise ValueError(f"architecture_to_dict: expected a Layer, got {type(layer).__name__}")
    name = type(layer).__name__
    registered = layer_registry().get(name)
    if registered is not type(layer):
        raise ValueError(
            f"architecture_to_dict: layer class {name!r} is not registered; export it from "
            f"im2col_net.layers or call im2col_net.serialization.register_layer({name})"
        )
    node = {"class": name, "config": layer.get_config()}
    children = layer.children()
    if children:
        node["children"] = [architecture_to_dict(child) for child in children]
    return node


def architecture_to_json(layer: Layer) -> str:
    """``architecture_to_dict`` as a compact, key-sorted JSON string."""
    try:
        return json.dumps(architecture_to_dict(layer), sort_keys=True, separators=(",", ":"))
    except TypeError as exc:
        raise ValueError(
            f"architecture_to_json: a layer's get_config() is not JSON-able: {exc}"
        ) from exc


def layer_from_dict(node, *, where: str = "architecture", _depth: int = 0) -> Layer:
    """Rebuild a layer tree from :func:`architecture_to_dict` output (fresh parameters).

    Trees nested deeper than :data:`MAX_JSON_DEPTH` layers are refused (ValueError)."""
    if _depth > MAX_JSON_DEPTH:
        raise ValueError(f"{where}: layers nested more than {MAX_JSON_DEPTH} levels deep")
    if not isinstance(node, dict) or not isinstance(node.get("class"), str):
        raise ValueError(f"{where}: expected an object with a 'class' name, got {node!r:.200}")
    name = node["class"]
    config = node.get("config", {})
    if not isinstance(config, dict):
        raise ValueError(f"{where}: config of {name!r} must be an object, got {config!r:.200}")
    registry = layer_registry()
    if name not in registry:
        raise ValueError(
            f"{where}: unknown layer class {name!r}; known classes: {sorted(registry)}"
        )
    children_nodes = node.get("children", [])
    if not isinstance(children_nodes, list):
        raise ValueError(f"{where}: children of {name!r} must be a list")
    children = [layer_from_dict(child, where=f"{where}.{name}[{i}]", _depth=_depth + 1)
                for i, child in enumerate(children_nodes)]
    try:
        return registry[name].from_config(config, children)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: cannot rebuild {name} from config {config}: {exc}") from exc


def model_from_json(text: str) -> Layer:
    """Rebuild a layer tree from :func:`architecture_to_json` output.

    JSON nested deeper than :data:`MAX_JSON_DEPTH` is refused before it is parsed."""
    check_json_depth(text, MAX_JSON_DEPTH, "model_from_json: architecture", ValueError)
    try:
        node = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"model_from_json: invalid architecture JSON: {exc}") from exc
    return layer_from_dict(node)


# -- walking the tree -------------------------------------------------------------------
def named_layers(layer: Layer, path: str = ""):
    """``(dotted path, layer)`` for ``layer`` (path ``""``) and every sub-layer, depth first;
    a child's path adds its index in ``children()`` (``"4"``, ``"4.0"``)."""
    yield path, layer
    for i, child in enumerate(layer.children()):
        yield from named_layers(child, f"{path}.{i}" if path else str(i))


def _dotted(path, name):
    return f"{path}.{name}" if path else name


def _own_buffers(layer: Layer) -> dict:
    buffers = getattr(layer, "buffers", None) or {}
    if not isinstance(buffers, dict):
        raise ValueError(f"{layer!r}: 'buffers' must be a dict of arrays, got {type(buffers)}")
    child_prefixes = tuple(f"{i}." for i in range(len(layer.children())))
    return {k: v for k, v in buffers.items()
            if not (child_prefixes and k.startswith(child_prefixes))}


def named_buffers(layer: Layer) -> dict[str, np.ndarray]:
    """Every buffer of the tree under a dotted name (the arrays themselves, not copies)."""
    out = {}
    for path, sub in named_layers(layer):
        for name, value in _own_buffers(sub).items():
            out[_dotted(path, name)] = value
    return out


def load_buffers(layer: Layer, buffers: dict, *, where: str = "load_buffers"):
    """Copy ``buffers`` (dotted name -> array) into the tree's buffers, in place where the
    existing value is an array. Names and shapes must match exactly."""
    owners = {}
    for path, sub in named_layers(layer):
        for name in _own_buffers(sub):
            owners[_dotted(path, name)] = (sub, name)
    missing = sorted(set(owners) - set(buffers))
    unexpected = sorted(set(buffers) - set(owners))
    if missing or unexpected:
        raise ValueError(f"{where}: buffers do not match the model: missing {missing}, "
                         f"unexpected {unexpected}")
    for key, (sub, name) in owners.items():
        value = np.asarray(buffers[key])
        target = sub.buffers[name]
        if isinstance(target, np.ndarray):
            if value.shape != target.shape:
                raise ValueError(f"{where}: buffer {key!r} expects shape {target.shape}, "
                                 f"got {value.shape}")
            np.copyto(target, value, casting="same_kind")
        else:
            sub.buffers[name] = value.copy()


# -- npz files --------------------------------------------------------------------------
def atomic_savez(path, arrays: dict):
    """Write ``arrays`` as an uncompressed ``.npz`` at exactly ``path`` (no suffix added),
    through :func:`~im2col_net.safeio.atomic_file` (creating the directory): a previous
    file is replaced only by a complete one, with mode ``0666 & ~umask``, SIGINT/SIGTERM
    held meanwhile. :func:`remove_stale_temp_files` clears what a SIGKILL leaves.
    """
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_file(path) as handle:
        np.savez(handle, **arrays)


def stale_temp_files(path) -> list[str]:
    """The temporary files :func:`atomic_savez` (any ``safeio.atomic_file``) may have left
    for ``path`` (killed mid-write)."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    prefix, suffix = f".{os.path.basename(path)}.", ".tmp"
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    return sorted(os.path.join(directory, name) for name in names
                  if name.startswith(prefix) and name.endswith(suffix)
                  and TEMP_TOKEN.fullmatch(name[len(prefix):-len(suffix)]))


def remove_stale_temp_files(path) -> list[str]:
    """Delete :func:`stale_temp_files` of ``path``; returns their paths.

    Only call this while no other process can be writing ``path`` (e.g. while holding
    the training run directory's lock), or a live writer's file would vanish.
    """
    removed = []
    for tmp in stale_temp_files(path):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
            removed.append(tmp)
    return removed


# What a damaged or hostile .npz can raise while being read.
_READ_ERRORS = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error,
                UnicodeDecodeError, NotImplementedError, RuntimeError, OverflowError,
                MemoryError)


def _safe_text(exc) -> str:
    """An exception's text, never numpy's advice to unpickle an untrusted file."""
    text = str(exc)
    if "pickle" in text.lower():
        return "object arrays are refused for safety (reading them would unpickle)"
    return text


def read_npz(path, *, error=ModelFileError, max_bytes: int = DEFAULT_MAX_NPZ_BYTES,
             max_ratio: float = DEFAULT_MAX_COMPRESSION_RATIO) -> dict[str, np.ndarray]:
    """Every array of the ``.npz`` at ``path``, read eagerly and never unpickling.

    A missing file raises FileNotFoundError. ``error`` (naming the file and what was
    expected and found) is raised for: a path that is not a regular file (directory,
    FIFO, device: never opened for long or waited on), a file that is not a zip archive
    (judged by its first bytes), members that are not ``.npy`` arrays or hold objects,
    a member whose header declares more than ``max_bytes`` or a size other than the
    member's, members declaring more than ``max_bytes`` in total, compressed members
    over 1 MiB that inflate more than ``max_ratio`` times, and damaged data (truncated,
    bad CRC). All size checks come from the zip directory and the ``.npy`` headers,
    before any array is allocated.
    """
    path = os.fspath(path)
    with open_regular(path, error, "an .npz model file") as handle:
        head = handle.read(8)
        if not head:
            raise error(f"{path}: is empty (0 bytes); expected an .npz model file")
        if head.startswith(NPY_MAGIC):
            raise error(f"{path}: is a single .npy array, not an .npz archive of arrays")
        if not head.startswith(_ZIP_MAGICS):
            raise error(f"{path}: not an .npz model file (starts with {head!r}; an .npz file "
                        f"is a zip archive starting with {_ZIP_MAGICS[0]!r})")
        handle.seek(0)
        try:
            with zipfile.ZipFile(handle) as archive:
                return _read_members(archive, path, error, max_bytes, max_ratio)
        except error:
            raise
        except _READ_ERRORS as exc:
            raise error(f"{path}: not a readable .npz file ({type(exc).__name__}: "
                        f"{_safe_text(exc)})") from None


def _read_members(archive, path, error, max_bytes, max_ratio):
    infos = archive.infolist()
    names = [info.filename for info in infos]
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise error(f"{path}: zip members listed more than once: {twice[:5]}")
    total = 0
    for info in infos:  # the whole directory is judged before any member is read
        where = f"{path}: member {info.filename!r}"
        if info.flag_bits & 0x1:
            raise error(f"{where} is encrypted")
        if info.file_size > max_bytes:
            raise error(f"{where} declares {describe_bytes(info.file_size)} uncompressed, "
                        f"over the limit of {describe_bytes(max_bytes)}")
        total += info.file_size
        if total > max_bytes:
            raise error(f"{path}: members declare more than {describe_bytes(max_bytes)} in "
                        f"total (the limit; pass max_bytes= to raise it)")
        if (info.compress_type != zipfile.ZIP_STORED and info.file_size > _RATIO_CHECK_BYTES
                and info.file_size > max_ratio * max(info.compress_size, 1)):
            raise error(f"{where} inflates {info.compress_size:,} compressed bytes to "
                        f"{describe_bytes(info.file_size)}, more than {max_ratio:g} times "
                        f"(refused as a likely decompression bomb)")
    arrays = {}
    for info in infos:
        key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
        where = f"{path}: member {info.filename!r}"
        with archive.open(info) as member:
            arrays[key] = read_npy(member, info.file_size, where, error, max_bytes)
            member.read(1)  # reach the end of the member, where zipfile checks the CRC
    return arrays


def json_scalar(obj) -> np.ndarray:
    """``obj`` as JSON in a 0-d unicode array (loadable without pickle)."""
    return np.array(json.dumps(obj, sort_keys=True, separators=(",", ":")))


def json_from_array(arrays: dict, key: str, path, *, error=ModelFileError):
    """Decode the JSON stored under ``key`` by :func:`json_scalar`."""
    text = _str_member(arrays, key, path, error)
    check_json_depth(text, MAX_JSON_DEPTH, f"{path}: member {key!r}", error)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{path}: member {key!r} is not valid JSON: {exc}") from exc


def _str_member(arrays, key, path, error):
    if key not in arrays:
        raise error(f"{path}: missing member {key!r}")
    value = arrays[key]
    if value.shape != () or value.dtype.kind != "U":
        raise error(f"{path}: member {key!r} should be a 0-d string, got {value.dtype} "
                    f"shape {value.shape}")
    return str(value)


def model_arrays(model: Layer) -> dict[str, np.ndarray]:
    """The members describing ``model`` in a model file (also embedded in checkpoints)."""
    dtype = model.dtype
    arrays = {
        "__format__": np.array(MODEL_FORMAT),
        "__version__": np.array(FORMAT_VERSION, dtype=np.int64),
        "__architecture__": np.array(architecture_to_json(model)),
        "__dtype__": np.array(np.dtype(dtype).name if dtype is not None else "float32"),
    }
    for name, value in model.named_parameters():
        arrays[PARAM_PREFIX + name] = np.asarray(value)
    for name, value in named_buffers(model).items():
        arrays[BUFFER_PREFIX + name] = np.asarray(value)
    return arrays


def model_from_arrays(arrays: dict, path, *, error=ModelFileError,
                      allow_nonfinite: bool = False) -> Layer:
    """Rebuild a model from :func:`model_arrays` members; ``error`` names ``path``.

    The layer tree is built with placeholder weights (nothing drawn or allocated), every
    parameter and buffer it declares is checked against the stored arrays' names and
    shapes, then the stored arrays are installed. Non-finite values are refused unless
    ``allow_nonfinite``.
    """
    fmt = _str_member(arrays, "__format__", path, error)
    if fmt != MODEL_FORMAT:
        raise error(f"{path}: unexpected format {fmt!r} (expected {MODEL_FORMAT!r})")
    version = arrays.get("__version__")
    if version is None or version.shape != () or version.dtype.kind not in "iu":
        raise error(f"{path}: missing or malformed member '__version__'")
    if int(version) > FORMAT_VERSION:
        raise error(f"{path}: format version {int(version)} is newer than this im2col_net "
                    f"understands ({FORMAT_VERSION})")
    dtype_name = _str_member(arrays, "__dtype__", path, error)
    try:
        dtype = np.dtype(dtype_name)
    except TypeError as exc:
        raise error(f"{path}: unknown dtype {dtype_name!r}") from exc
    if dtype.kind != "f":
        raise error(f"{path}: parameter dtype must be floating, got {dtype_name!r}")
    try:
        with deferred_init():  # shapes only: weights come from the file
            model = model_from_json(_str_member(arrays, "__architecture__", path, error))
    except ModelFileError:
        raise
    except (ValueError, RecursionError) as exc:
        raise error(f"{path}: {exc}") from None
    params = {k[len(PARAM_PREFIX):]: v for k, v in arrays.items() if k.startswith(PARAM_PREFIX)}
    buffers = {k[len(BUFFER_PREFIX):]: v for k, v in arrays.items()
               if k.startswith(BUFFER_PREFIX)}
    for name, value in list(params.items()) + list(buffers.items()):
        if value.dtype.kind not in "fiub":
            raise error(f"{path}: array {name!r} has unsupported dtype {value.dtype}")
    try:
        slots = _matched_slots(model, params, buffers, dtype)
    except ValueError as exc:
        raise error(f"{path}: arrays do not fit the architecture: {exc}") from None
    if not allow_nonfinite:
        refuse_nonfinite(params, buffers, path, error=error)
    for owner, name, value, target_dtype, is_buffer in slots:
        installed = np.array(value, dtype=target_dtype, order="C", copy=True)
        if is_buffer:
            owner.buffers[name] = installed
        else:
            owner.params[name] = installed
    model.astype(dtype)
    return model


def refuse_nonfinite(params: dict, buffers: dict, path, *, error=ModelFileError):
    """Raise ``error`` naming ``path`` and every parameter or buffer (name -> array)
    that holds NaN or infinity; the message says how to load such a file anyway."""
    bad = nonfinite_arrays({**{f"parameter {k!r}": v for k, v in params.items()},
                            **{f"buffer {k!r}": v for k, v in buffers.items()}})
    if bad:
        listed = "; ".join(f"{name} has {count:,} of {size:,} values NaN or infinite"
                           for name, count, size in bad[:5])
        more = f" (and {len(bad) - 5} more arrays)" if len(bad) > 5 else ""
        raise error(f"{path}: non-finite weights: {listed}{more}; refusing to load them "
                    f"(pass allow_nonfinite=True, or --allow-nonfinite on the command "
                    f"line, to load the file anyway)")


def nonfinite_arrays(arrays: dict) -> list[tuple[str, int, int]]:
    """``(name, bad count, size)`` for every floating array in ``arrays`` (name ->
    array) holding NaN or infinity, counted in blocks (no full-size temporary)."""
    out = []
    for name, value in arrays.items():
        value = np.asarray(value)
        if value.dtype.kind not in "fc" or value.size == 0:
            continue
        flat = value.reshape(-1)
        bad = 0
        for start in range(0, flat.size, 1 << 20):
            block = flat[start:start + (1 << 20)]
            bad += block.size - int(np.count_nonzero(np.isfinite(block)))
        if bad:
            out.append((name, bad, int(value.size)))
    return out


def _slots(model: Layer):
    """``(dotted name, owning layer, local name)`` of every parameter and buffer."""
    params, buffers = {}, {}
    for path, sub in named_layers(model):
        if sub._owns_params:
            for name in sub.params:
                params[_dotted(path, name)] = (sub, name)
        for name in _own_buffers(sub):
            buffers[_dotted(path, name)] = (sub, name)
    return params, buffers


def _matched_slots(model: Layer, params: dict, buffers: dict, dtype):
    """Check the stored arrays against what the architecture declares (names, shapes,
    castability) without touching the model; returns what to install where."""
    param_slots, buffer_slots = _slots(model)
    declared = dict(model.named_parameters())
    if set(param_slots) != set(declared):
        raise ValueError("cannot tell which layer owns each parameter")
    out = []
    for kind, slots, stored in (("parameters", param_slots, params),
                                ("buffers", buffer_slots, buffers)):
        missing = sorted(set(slots) - set(stored))
        unexpected = sorted(set(stored) - set(slots))
        if missing or unexpected:
            raise ValueError(f"{kind} do not match: missing {missing[:10]}, unexpected "
                             f"{unexpected[:10]}")
        for key, (owner, name) in slots.items():
            value = stored[key]
            target = owner.buffers[name] if kind == "buffers" else owner.params[name]
            if not isinstance(target, np.ndarray):
                out.append((owner, name, value, np.asarray(value).dtype, kind == "buffers"))
                continue
            if value.shape != target.shape:
                raise ValueError(f"{kind[:-1]} {key!r} has shape {value.shape}, the "
                                 f"architecture needs {target.shape}")
            target_dtype = dtype if target.dtype.kind == "f" else target.dtype
            if not np.can_cast(value.dtype, target_dtype, casting="same_kind"):
                raise ValueError(f"{kind[:-1]} {key!r} of dtype {value.dtype} cannot be "
                                 f"stored as {target_dtype}")
            out.append((owner, name, value, target_dtype, kind == "buffers"))
    return out


def load_parameters(model: Layer, params: dict):
    """Copy ``params`` (dotted name -> array) into ``model`` after checking names and
    shapes, with a short message (Layer.load_state_dict's names the whole model)."""
    own = dict(model.named_parameters())
    missing = sorted(set(own) - set(params))
    unexpected = sorted(set(params) - set(own))
    if missing or unexpected:
        raise ValueError(f"parameters do not match: missing {missing}, unexpected {unexpected}")
    for name, target in own.items():
        if np.shape(params[name]) != target.shape:
            raise ValueError(f"parameter {name!r} has shape {np.shape(params[name])}, the "
                             f"architecture needs {target.shape}")
    model.load_state_dict(params)


def save_model(model: Layer, path) -> None:
    """Write ``model`` (architecture, dtype, parameters, buffers) to ``path`` atomically.

    The file is an ``.npz`` readable without pickle; :func:`load_model` rebuilds the
    model from it with no user code. ``path`` is used exactly as given.
    """
    if not isinstance(model, Layer):
        raise ValueError(f"save_model: expected a Layer, got {type(model).__name__}")
    atomic_savez(path, model_arrays(model))


def load_model(path, *, allow_nonfinite: bool = False,
               max_bytes: int = DEFAULT_MAX_NPZ_BYTES) -> Layer:
    """Rebuild a model saved by :func:`save_model` (or the model inside a checkpoint).

    Returns the layer tree in training mode with the saved dtype, parameters and buffers.
    Raises FileNotFoundError if ``path`` does not exist and :class:`ModelFileError`
    (a ValueError) naming ``path`` for any damaged, oversized or inconsistent content
    (see :func:`read_npz` for the limits; ``max_bytes`` raises the size limit), and for
    NaN or infinite parameters or buffers unless ``allow_nonfinite=True``.
    """
    return model_from_arrays(read_npz(path, max_bytes=max_bytes), os.fspath(path),
                             allow_nonfinite=allow_nonfinite)
