"""Where the data sets live, their published checksums, and the verified download.

MNIST (LeCun, Cortes, Burges) ships inside the package as the four original gzipped IDX
files, so training works offline. Fashion-MNIST (Xiao, Rasul, Vollgraf) is looked up,
in order, in a directory the caller names, in ``$IM2COL_NET_DATA``, in Debian's
``/usr/share/datasets/fashion-mnist/`` (package ``dataset-fashion-mnist``), in the user
cache directory, and finally downloaded into that cache from the official mirror.

Every file is checked against the SHA-256 of its decompressed bytes before use. A
download is written to a temporary file beside its target, checked, then renamed: a bad
or interrupted download leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from .idx import ChecksumError, DataError, file_bytes, read_idx_bytes

PACKAGE_MNIST_DIR = Path(__file__).resolve().parent / "mnist"
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
URL_ENV = "IM2COL_NET_FASHION_MNIST_URL"
DATA_ENV = "IM2COL_NET_DATA"

FILES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}

# SHA-256 of the decompressed files, per data set.
SHA256 = {
    "mnist": {
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
}


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/im2col_net`` or ``~/.cache/im2col_net``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "im2col_net"


def find_file(directory: Path, stem: str, subdirs=("",)) -> Path | None:
    """``directory[/sub]/stem`` or ``stem.gz``, whichever exists first."""
    for sub in subdirs:
        for name in (stem + ".gz", stem):
            candidate = directory / sub / name if sub else directory / name
            if candidate.is_file():
                return candidate
    return None


def verified_bytes(path: Path, dataset: str, stem: str) -> bytes:
    """Decompressed content of ``path`` after checking its SHA-256."""
    data = file_bytes(path)
    expected = SHA256[dataset][stem]
    found = hashlib.sha256(data).hexdigest()
    if found != expected:
        raise ChecksumError(
            f"{path}: SHA-256 of the decompressed data is {found}, expected {expected} "
            f"(the file is corrupted or not the published {dataset} {stem})"
        )
    return data


def candidate_dirs(dataset: str, data_dir=None) -> list[tuple[str, Path, tuple[str, ...]]]:
    """``(description, directory, subdirectories)`` to search, in order."""
    subdirs = ("", dataset)
    out = []
    if data_dir is not None:
        out.append(("--data-dir", Path(data_dir), subdirs))
    if os.environ.get(DATA_ENV):
        out.append((f"${DATA_ENV}", Path(os.environ[DATA_ENV]), subdirs))
    if dataset == "mnist":
        if data_dir is None:
            out.append(("package data", PACKAGE_MNIST_DIR, ("",)))
    else:
        out.append(("Debian package dataset-fashion-mnist", DEBIAN_FASHION_DIR, ("",)))
        out.append(("user cache", cache_dir() / dataset, ("",)))
    return out


def download(url: str, target: Path, dataset: str, stem: str, timeout: float = 60.0) -> Path:
    """Fetch ``url`` into ``target`` atomically, keeping it only if its checksum matches."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            expected_length = response.headers.get("Content-Length")
            received = 0
            while True:
                chunk = response.read(1 << 20)
                if not chunk:
                    break
                out.write(chunk)
                received += len(chunk)
            if expected_length is not None and received != int(expected_length):
                raise DataError(
                    f"download of {url} was interrupted: received {received} of "
                    f"{expected_length} bytes"
                )
            out.flush()
            os.fsync(out.fileno())
        verified_bytes(tmp, dataset, stem)
        os.replace(tmp, target)
        return target
    except (urllib.error.URLError, OSError, ValueError) as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, DataError):
            raise
        raise DataError(f"download of {url} failed: {exc}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_file(dataset: str, split: str, kind: str, data_dir=None, download_ok: bool = True,
              base_url: str | None = None):
    """Find (or download), verify and parse one IDX file; returns the array."""
    stem = FILES[(split, kind)]
    tried = []
    for description, directory, subdirs in candidate_dirs(dataset, data_dir):
        path = find_file(directory, stem, subdirs)
        tried.append(f"{description} ({directory})")
        if path is not None:
            return read_idx_bytes(verified_bytes(path, dataset, stem), str(path))
    if dataset != "mnist" and download_ok:
        url = (base_url or os.environ.get(URL_ENV) or FASHION_MNIST_URL).rstrip("/") + "/"
        target = cache_dir() / dataset / (stem + ".gz")
        try:
            path = download(url + stem + ".gz", target, dataset, stem)
        except DataError as exc:
            tried.append(f"download into {target.parent} ({exc})")
        else:
            return read_idx_bytes(verified_bytes(path, dataset, stem), str(path))
    ways = (
        "pass --data-dir DIR (or data_dir=) holding the four IDX files (raw or .gz); "
        f"set ${DATA_ENV} to such a directory; "
        + ("install Debian's package dataset-fashion-mnist; let it download into "
           f"{cache_dir() / dataset} (needs network access to {FASHION_MNIST_URL})"
           if dataset != "mnist" else "reinstall im2col_net (it ships MNIST)")
    )
    raise DataError(
        f"{dataset} file {stem} not found. Looked in: " + "; ".join(tried) + f". Ways to provide it: {ways}"
    )
