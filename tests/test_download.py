"""The Fashion-MNIST download path, for real, against a server on 127.0.0.1."""

import gzip
import hashlib
import http.server
import struct
import threading

import numpy as np
import pytest

from im2col_net import datasets
from im2col_net.datasets import ChecksumError, DataError, load_dataset, sources


def idx_gz(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes())


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict = {}
    short: set = set()

    def do_GET(self):  # noqa: N802 - http.server's naming
        name = self.path.rsplit("/", 1)[-1]
        body = self.files.get(name)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        # An "interrupted" file: promise the full length, send half, hang up.
        self.wfile.write(body[: len(body) // 2] if name in self.short else body)
        if name in self.short:
            self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def server(monkeypatch, tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 6, dtype=np.uint8)
    files, hashes = {}, {}
    for (split, kind), stem in sources.FILES.items():
        array = images if kind == "images" else labels
        files[stem + ".gz"] = idx_gz(array)
        hashes[stem] = hashlib.sha256(gzip.decompress(files[stem + ".gz"])).hexdigest()
    handler = type("Handler", (_Handler,), {"files": files, "short": set()})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setitem(sources.SHA256, "fashion-mnist", hashes)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv(sources.URL_ENV, f"http://127.0.0.1:{httpd.server_address[1]}/")
    monkeypatch.delenv(sources.DATA_ENV, raising=False)
    monkeypatch.setattr(sources, "DEBIAN_FASHION_DIR", tmp_path / "no-debian")
    datasets._raw_split.cache_clear()
    yield handler, images, labels, tmp_path / "cache" / "im2col_net" / "fashion-mnist"
    httpd.shutdown()
    httpd.server_close()
    datasets._raw_split.cache_clear()


def test_download_lands_in_the_cache_and_loads(server):
    _, images, labels, cache = server
    x, y = load_dataset("fashion-mnist", "train")
    np.testing.assert_array_equal(y, labels)
    np.testing.assert_allclose(x[:, 0] * 255, images, atol=1e-3)
    assert sorted(p.name for p in cache.iterdir()) == [
        "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]


def test_corrupted_download_is_refused_and_leaves_nothing(server):
    handler, _, _, cache = server
    name = "train-labels-idx1-ubyte.gz"
    handler.files[name] = idx_gz(np.full(6, 9, np.uint8))  # valid IDX, wrong content
    with pytest.raises(DataError) as info:
        load_dataset("fashion-mnist", "train")
    assert "SHA-256" in str(info.value)
    assert not (cache / name).exists()
    assert not [p for p in cache.iterdir() if p.name.endswith(".part")]


def test_checksum_error_type_from_download(server, tmp_path):
    handler, _, _, _ = server
    handler.files["t10k-images-idx3-ubyte.gz"] = idx_gz(np.zeros((6, 28, 28), np.uint8))
    target = tmp_path / "x.gz"
    url = sources.os.environ[sources.URL_ENV] + "t10k-images-idx3-ubyte.gz"
    with pytest.raises(ChecksumError):
        sources.download(url, target, "fashion-mnist", "t10k-images-idx3-ubyte")
    assert not target.exists() and list(tmp_path.glob("*.part")) == []


def test_missing_file_on_server(server):
    handler, _, _, cache = server
    del handler.files["t10k-labels-idx1-ubyte.gz"]
    with pytest.raises(DataError, match="404"):
        load_dataset("fashion-mnist", "test")
    assert not (cache / "t10k-labels-idx1-ubyte.gz").exists()


def test_interrupted_download_leaves_nothing(server):
    handler, _, _, cache = server
    handler.short.add("train-images-idx3-ubyte.gz")
    with pytest.raises(DataError):
        load_dataset("fashion-mnist", "train")
    assert not (cache / "train-images-idx3-ubyte.gz").exists()
    assert not [p for p in cache.iterdir() if p.name.endswith(".part")]
