"""The Fashion-MNIST download path, for real, against an HTTP server on 127.0.0.1.

The published checksum table is monkeypatched to the crafted files' hashes; nothing
here touches the network beyond 127.0.0.1.
"""

import gzip
import hashlib
import http.server
import struct
import threading

import numpy as np
import pytest

from im2col_net.datasets import ChecksumError, DataError, load_dataset, sources


def idx_gz(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes())


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``files`` by name; names in ``short`` are cut off half-way."""

    files: dict = {}
    short: dict = {}  # name -> send a Content-Length header (True) or not (False)
    requests: list = []

    def do_GET(self):  # noqa: N802 - http.server's naming
        name = self.path.rsplit("/", 1)[-1]
        self.requests.append(self.path)
        body = self.files.get(name)
        if body is None:
            self.send_error(404, "File not found")
            return
        self.send_response(200)
        if name not in self.short or self.short[name]:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if name in self.short:
            # promise (or imply) the whole file, send half, hang up
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
        else:
            self.wfile.write(body)

    def log_message(self, *args):
        pass


def _start(handler):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    return httpd, thread, f"http://127.0.0.1:{httpd.server_address[1]}/data"


def _stop(httpd, thread):
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=10)


@pytest.fixture
def server(monkeypatch, tmp_path):
    """(handler class, images, labels, cache directory); the server's URL is in the env var."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 6, dtype=np.uint8)
    files, hashes = {}, {}
    for (_split, kind), stem in sources.FILES.items():
        files[stem + ".gz"] = idx_gz(images if kind == "images" else labels)
        hashes[stem] = hashlib.sha256(gzip.decompress(files[stem + ".gz"])).hexdigest()
    handler = type("Handler", (_Handler,), {"files": files, "short": {}, "requests": []})
    httpd, thread, url = _start(handler)
    monkeypatch.setitem(sources.SHA256, "fashion-mnist", hashes)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv(sources.URL_ENV, url)
    monkeypatch.delenv(sources.DATA_ENV, raising=False)
    monkeypatch.setattr(sources, "DEBIAN_FASHION_DIR", tmp_path / "no-debian")
    yield handler, images, labels, tmp_path / "cache" / "im2col_net" / "fashion-mnist"
    _stop(httpd, thread)


def _leftovers(directory):
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def test_download_lands_in_the_cache_and_loads(server):
    handler, images, labels, cache = server
    x, y = load_dataset("fashion-mnist", "train")
    np.testing.assert_array_equal(y, labels)
    np.testing.assert_array_equal(x[:, 0], images.astype(np.float32) / np.float32(255))
    assert _leftovers(cache) == ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]
    assert handler.requests == ["/data/train-images-idx3-ubyte.gz",
                                "/data/train-labels-idx1-ubyte.gz"]
    # the second load reads the cache and asks the server for nothing
    _, again = load_dataset("fashion-mnist", "train")
    np.testing.assert_array_equal(again, labels)
    assert len(handler.requests) == 2


def test_cached_files_are_used_offline(server, monkeypatch):
    _, _, labels, cache = server
    load_dataset("fashion-mnist", "test")
    monkeypatch.setenv(sources.URL_ENV, "http://127.0.0.1:9/")  # nothing listens there
    _, y = load_dataset("fashion-mnist", "test", download=False)
    np.testing.assert_array_equal(y, labels)


def test_base_url_argument_overrides_the_env_var(server, monkeypatch):
    handler, _, labels, _ = server
    url = sources.os.environ[sources.URL_ENV]
    monkeypatch.setenv(sources.URL_ENV, "http://127.0.0.1:9/")
    _, y = load_dataset("fashion-mnist", "test", base_url=url + "/")
    np.testing.assert_array_equal(y, labels)
    assert handler.requests == ["/data/t10k-images-idx3-ubyte.gz",
                                "/data/t10k-labels-idx1-ubyte.gz"]


def test_download_disabled_asks_nobody(server):
    handler, _, _, cache = server
    with pytest.raises(DataError, match="download \\(disabled\\)"):
        load_dataset("fashion-mnist", "test", download=False)
    assert handler.requests == [] and _leftovers(cache) == []


def test_corrupted_download_is_refused_and_leaves_nothing(server):
    handler, _, _, cache = server
    name = "train-labels-idx1-ubyte.gz"
    handler.files[name] = idx_gz(np.full(6, 9, np.uint8))  # valid IDX, wrong content
    with pytest.raises(DataError) as info:
        load_dataset("fashion-mnist", "train")
    assert "SHA-256" in str(info.value) and name.removesuffix(".gz") in str(info.value)
    # the good images file stays; of the bad labels file there is no trace
    assert _leftovers(cache) == ["train-images-idx3-ubyte.gz"]


def test_checksum_error_type_from_download(server, tmp_path):
    handler, _, _, _ = server
    handler.files["t10k-images-idx3-ubyte.gz"] = idx_gz(np.zeros((6, 28, 28), np.uint8))
    target = tmp_path / "direct" / "t10k-images-idx3-ubyte.gz"
    url = sources.os.environ[sources.URL_ENV] + "/t10k-images-idx3-ubyte.gz"
    with pytest.raises(ChecksumError):
        sources.download(url, target, "fashion-mnist", "t10k-images-idx3-ubyte")
    assert _leftovers(target.parent) == []


def test_download_does_not_clobber_a_good_file_on_failure(server, tmp_path):
    handler, _, _, _ = server
    target = tmp_path / "direct" / "t10k-labels-idx1-ubyte.gz"
    url = sources.os.environ[sources.URL_ENV] + "/t10k-labels-idx1-ubyte.gz"
    sources.download(url, target, "fashion-mnist", "t10k-labels-idx1-ubyte")
    good = target.read_bytes()
    handler.short["t10k-labels-idx1-ubyte.gz"] = True
    with pytest.raises(DataError, match="interrupted"):
        sources.download(url, target, "fashion-mnist", "t10k-labels-idx1-ubyte")
    assert target.read_bytes() == good and _leftovers(target.parent) == [target.name]


def test_missing_file_on_server(server):
    handler, _, _, cache = server
    del handler.files["t10k-labels-idx1-ubyte.gz"]
    with pytest.raises(DataError, match="404") as info:
        load_dataset("fashion-mnist", "test")
    text = str(info.value)
    assert "/data/t10k-labels-idx1-ubyte.gz" in text
    for hint in ("--data-dir", sources.DATA_ENV, "dataset-fashion-mnist"):
        assert hint in text
    assert _leftovers(cache) == ["t10k-images-idx3-ubyte.gz"]


@pytest.mark.parametrize("with_length", [True, False], ids=["content-length", "no-length"])
def test_interrupted_download_leaves_nothing(server, with_length):
    handler, _, _, cache = server
    handler.short["train-images-idx3-ubyte.gz"] = with_length
    with pytest.raises(DataError) as info:
        load_dataset("fashion-mnist", "train")
    # with a Content-Length the shortfall is seen; without, the gzip stream is cut short
    expected = "interrupted: received" if with_length else "corrupted gzip"
    assert expected in str(info.value)
    assert _leftovers(cache) == []


def test_server_that_went_away(tmp_path, monkeypatch):
    httpd, thread, url = _start(_Handler)
    _stop(httpd, thread)  # the port is now closed
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(sources.DATA_ENV, raising=False)
    monkeypatch.setattr(sources, "DEBIAN_FASHION_DIR", tmp_path / "no-debian")
    with pytest.raises(DataError, match="failed"):
        load_dataset("fashion-mnist", "test", base_url=url)
    assert _leftovers(tmp_path / "cache" / "im2col_net" / "fashion-mnist") == []
