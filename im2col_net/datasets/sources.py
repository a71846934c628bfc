"""Where the data sets live, their published checksums, and the verified download.

MNIST (Yann LeCun, Corinna Cortes, Christopher J. C. Burges) ships inside the package
as the four original gzipped IDX files (``im2col_net/datasets/mnist/``), so training
works offline. It is looked up in a directory the caller names, in ``$IM2COL_NET_DATA``,
then in that package data.

Fashion-MNIST (Han Xiao, Kashif Rasul, Roland Vollgraf; Zalando Research, MIT licence)
is looked up, in order, in:

1. a directory the caller names (``data_dir=`` / ``--data-dir``),
2. the directory ``$IM2COL_NET_DATA``,
3. Debian's ``/usr/share/datasets/fashion-mnist/`` (package ``dataset-fashion-mnist``,
   which installs the four gzipped IDX files there),
4. the user cache ``$XDG_CACHE_HOME/im2col_net/fashion-mnist`` (default
   ``~/.cache/im2col_net/fashion-mnist``),

and finally downloaded into that cache from the official mirror, or from the base URL
in ``$IM2COL_NET_FASHION_MNIST_URL`` / the ``base_url`` argument. In directories 1 and 2
the files may sit directly in the directory or in a ``fashion-mnist/`` (resp.
``mnist/``) subdirectory, gzipped (``<name>.gz``) or raw (``<name>``), under the
published names (``train-images-idx3-ubyte``) or the common variant with a dot
(``train-images.idx3-ubyte``, as on Kaggle).

A directory the user names is meant: when ``data_dir`` is given, only it is searched,
and when ``$IM2COL_NET_DATA`` is set (and no ``data_dir``), only that directory is. A
missing directory, a regular file, or a directory without the file raises
:class:`DataError` naming the directory and every file name looked for, instead of
silently using other data (the package's MNIST, a cache or a download).

Every file is checked against the SHA-256 of its decompressed bytes before use. A
download is written to a temporary file beside its target, checked, then renamed into
place: a bad or interrupted download leaves nothing behind.
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import logging
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from .idx import ChecksumError, DataError, IdxFormatError, file_bytes, read_idx_bytes

__all__ = [
    "PACKAGE_MNIST_DIR", "DEBIAN_FASHION_DIR", "FASHION_MNIST_URL", "URL_ENV", "DATA_ENV",
    "FILES", "SHA256", "cache_dir", "candidate_dirs", "file_names", "find_file",
    "check_sha256",
    "verified_bytes",
    "download", "load_file",
]

_log = logging.getLogger(__name__)

PACKAGE_MNIST_DIR = Path(__file__).resolve().parent / "mnist"
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
# The download links published in the Fashion-MNIST README.
FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
URL_ENV = "IM2COL_NET_FASHION_MNIST_URL"
DATA_ENV = "IM2COL_NET_DATA"
DOWNLOAD_TIMEOUT = 60.0  # seconds without progress before a download is abandoned

# (split, kind) -> file name without the .gz suffix
FILES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}

# SHA-256 of the decompressed files, per data set.
SHA256 = {
    "mnist": {
        "train-images-idx3-ubyte":
            "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte":
            "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte":
            "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte":
            "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte":
            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte":
            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte":
            "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte":
            "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
}


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/im2col_net`` or ``~/.cache/im2col_net``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "im2col_net"


def file_names(stem: str) -> tuple[str, ...]:
    """Accepted names of the file ``stem``: the published one and the variant with a dot
    before ``idx`` (``train-images.idx3-ubyte``), each gzipped or raw."""
    variants = [stem]
    dotted = stem.replace("-idx", ".idx", 1)
    if dotted != stem:
        variants.append(dotted)
    return tuple(name + suffix for name in variants for suffix in (".gz", ""))


def find_file(directory: Path, stem: str, subdirs=("",)) -> Path | None:
    """The first existing ``directory[/sub]/NAME`` for NAME in :func:`file_names`, else
    None."""
    for sub in subdirs:
        folder = directory / sub if sub else directory
        for name in file_names(stem):
            if (folder / name).is_file():
                return folder / name
    return None


def _explicit_dir(dataset: str, data_dir) -> tuple[str, Path] | None:
    """``(description, directory)`` the user named (``data_dir``, else the environment
    variable), or None."""
    if data_dir is not None:
        return "--data-dir", Path(data_dir)
    if os.environ.get(DATA_ENV):
        return f"${DATA_ENV}", Path(os.environ[DATA_ENV])
    return None


def _not_in_named_dir(dataset: str, stem: str, description: str, directory: Path) -> DataError:
    """The error for a file missing from a directory the user named."""
    if not directory.exists():
        problem = "does not exist"
    elif not directory.is_dir():
        problem = "is not a directory"
    else:
        problem = "does not hold the file"
    names = ", ".join(file_names(stem))
    return DataError(
        f"{description} {directory} {problem}: looked for the {dataset} file {stem} as "
        f"{names} in {directory} and in {directory / dataset}; name a directory holding the "
        f"four {dataset} IDX files (or leave {description} out to use the default data)")


def candidate_dirs(dataset: str, data_dir=None) -> list[tuple[str, Path, tuple[str, ...]]]:
    """``(description, directory, subdirectories)`` to search for ``dataset``, in order:
    only the named directory when ``data_dir`` is given or ``$IM2COL_NET_DATA`` is set."""
    explicit = _explicit_dir(dataset, data_dir)
    if explicit is not None:  # a directory the user named is the only place looked in
        return [(explicit[0], explicit[1], ("", dataset))]
    out = []
    if dataset == "mnist":
        out.append(("package data", PACKAGE_MNIST_DIR, ("",)))
    else:
        out.append(("Debian package dataset-fashion-mnist", DEBIAN_FASHION_DIR, ("",)))
        out.append(("user cache", cache_dir() / dataset, ("",)))
    return out


def check_sha256(data: bytes, dataset: str, stem: str, where: str, advice: str) -> None:
    """Raise :class:`ChecksumError` unless ``data`` hashes to the published ``stem``."""
    expected = SHA256[dataset][stem]
    found = hashlib.sha256(data).hexdigest()
    if found != expected:
        raise ChecksumError(
            f"{where}: SHA-256 of the decompressed data is {found}, expected {expected}: "
            f"not the published {dataset} {stem}; {advice}")


def verified_bytes(path: Path, dataset: str, stem: str) -> bytes:
    """Decompressed content of ``path`` after checking its SHA-256 (:class:`ChecksumError`)."""
    data = file_bytes(path)
    check_sha256(data, dataset, stem, str(path),
                 "the file is corrupted or another file; delete or replace it")
    return data


@functools.lru_cache(maxsize=8)
def _parse_verified(path: str, identity: tuple, dataset: str, stem: str, expected: str):
    """Verified, parsed, read-only array; cached per file identity (size, mtime, inode)."""
    array = read_idx_bytes(verified_bytes(Path(path), dataset, stem), path)
    array.setflags(write=False)
    return array


def _load_verified(path: Path, dataset: str, stem: str) -> np.ndarray:
    st = path.stat()
    identity = (st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)
    return _parse_verified(str(path), identity, dataset, stem, SHA256[dataset][stem])


def download(url: str, target: Path, dataset: str, stem: str,
             timeout: float = DOWNLOAD_TIMEOUT) -> Path:
    """Fetch ``url`` into ``target`` atomically, keeping it only if its checksum matches.

    The bytes go to a temporary file in ``target``'s directory, are checked for the
    promised length and the published SHA-256, then renamed onto ``target``. On any
    failure the temporary file is removed and :class:`DataError` (``ChecksumError`` for
    a wrong checksum) is raised; ``target`` is never left half-written.
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.",
                                        suffix=".part")
    except OSError as exc:
        raise DataError(f"cannot write into {target.parent}: {exc}") from exc
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            promised = response.headers.get("Content-Length")
            received = 0
            while chunk := response.read(1 << 20):
                out.write(chunk)
                received += len(chunk)
            if promised is not None and received != int(promised):
                raise DataError(
                    f"download of {url} was interrupted: received {received} of "
                    f"{promised} bytes")
            out.flush()
            os.fsync(out.fileno())
        try:
            data = file_bytes(tmp)
        except IdxFormatError as exc:
            raise IdxFormatError(f"download of {url}: {exc}") from None
        check_sha256(data, dataset, stem, f"download of {url}",
                     "the server sent a wrong or damaged file")
        os.replace(tmp, target)
        return target
    except DataError:
        tmp.unlink(missing_ok=True)
        raise
    except (OSError, http.client.HTTPException, ValueError) as exc:
        # URLError/HTTPError/timeouts are OSErrors; IncompleteRead is an HTTPException
        tmp.unlink(missing_ok=True)
        raise DataError(f"download of {url} failed: {exc}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _ways_to_provide(dataset: str, base_url: str) -> str:
    """How to get the files, addressed to someone who installed im2col_net with pip."""
    if dataset == "mnist":
        return ("reinstall im2col_net (pip install --force-reinstall im2col_net), which ships "
                "MNIST; or pass --data-dir DIR (data_dir= in Python), or set "
                f"${DATA_ENV}, naming a directory that holds the four IDX files")
    names = ", ".join(f"{FILES[key]}.gz" for key in sorted(FILES))
    ways = [
        f"download the four files ({names}) from {base_url} or from the project page "
        f"https://github.com/zalandoresearch/fashion-mnist (folder data/fashion) into a "
        f"directory, then pass --data-dir DIR (data_dir= in Python) or set ${DATA_ENV}=DIR "
        f"(gzipped or not, directly in DIR or in DIR/{dataset}/)",
        f"or let im2col-net download them into {cache_dir() / dataset} by itself (needs "
        f"network access to {base_url}; ${URL_ENV} names a mirror)",
        f"or, on Debian and Ubuntu, install the package dataset-fashion-mnist (apt install "
        f"dataset-fashion-mnist; files in {DEBIAN_FASHION_DIR})",
    ]
    return "; ".join(ways)


def load_file(dataset: str, split: str, kind: str, data_dir=None, download_ok: bool = True,
              base_url: str | None = None) -> np.ndarray:
    """Find (or download), verify and parse one IDX file of ``dataset``.

    ``kind`` is "images" or "labels". Returns the file's array (uint8 for the real
    files), read-only because it is shared by later calls for the same unchanged file.
    Raises :class:`ChecksumError` for a file whose checksum is wrong, :class:`IdxFormatError`
    for a malformed one, :class:`DataError` listing every place looked in and every way
    to provide the data when the file is nowhere to be found.
    """
    stem = FILES[(split, kind)]
    base = base_url or os.environ.get(URL_ENV) or FASHION_MNIST_URL
    explicit = _explicit_dir(dataset, data_dir)
    if explicit is not None:
        description, directory = explicit
        path = find_file(directory, stem, ("", dataset))
        if path is None:
            raise _not_in_named_dir(dataset, stem, description, directory)
        return _load_verified(path, dataset, stem)
    tried = []
    for description, directory, subdirs in candidate_dirs(dataset, data_dir):
        path = find_file(directory, stem, subdirs)
        tried.append(f"{description} ({directory})")
        if path is not None:
            return _load_verified(path, dataset, stem)
    if dataset != "mnist":
        target = cache_dir() / dataset / (stem + ".gz")
        if download_ok:
            url = base.rstrip("/") + "/" + stem + ".gz"
            _log.info("downloading %s into %s", url, target)
            try:
                download(url, target, dataset, stem)
            except DataError as exc:
                tried.append(f"download into {target.parent} ({exc})")
            else:
                return _load_verified(target, dataset, stem)
        else:
            tried.append("download (disabled)")
    bundled = "" if dataset == "mnist" else f" ({dataset} is not bundled with im2col_net)"
    raise DataError(
        f"{dataset} file {stem} not found{bundled}. To get it: "
        f"{_ways_to_provide(dataset, base)}. Looked in: {'; '.join(tried)}")
