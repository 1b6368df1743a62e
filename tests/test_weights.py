"""ImageNet weights are verified against the hash Keras publishes before anything uses them,
fetched from a loopback HTTP server (127.0.0.1 only) standing in for Keras' storage."""

import functools
import hashlib
import importlib
import inspect
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from smallcnn import models, weights
from smallcnn.errors import UserError
from smallcnn.registry import BASES

# The keras.applications module that downloads each base's weights, where its hash is published.
KERAS_MODULES = {
    "vgg16": "keras.src.applications.vgg16",
    "resnet50": "keras.src.applications.resnet",
    "mobilenetv2": "keras.src.applications.mobilenet_v2",
    "efficientnetb0": "keras.src.applications.efficientnet",
}


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def served(tmp_path):
    """(folder, base address) of a loopback server of that folder's files."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = functools.partial(QuietHandler, directory=str(folder))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    yield folder, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize("base", sorted(BASES))
def test_the_table_holds_the_hash_keras_publishes(base):
    published = BASES[base].imagenet_notop_hash
    source = inspect.getsource(importlib.import_module(KERAS_MODULES[base]))
    if published is None:
        # Fails once Keras publishes one: then it belongs in the table.
        assert "file_hash" not in source
    else:
        assert f'"{published}"' in source


def test_a_substituted_file_is_deleted_and_both_hashes_named(served, tmp_path):
    folder, address = served
    substitute = b"not the weights Keras published\n" * 100
    (folder / "vgg16_notop.h5").write_bytes(substitute)
    out = tmp_path / "resources" / "weights" / "vgg16_imagenet_notop.weights.h5"
    with pytest.raises(UserError) as error:
        weights.fetch_imagenet_weights("vgg16", out, url=f"{address}/vgg16_notop.h5")
    message = str(error.value)
    published = BASES["vgg16"].imagenet_notop_hash
    assert published in message and hashlib.md5(substitute).hexdigest() in message
    assert "\n" not in message
    assert list(out.parent.iterdir()) == []


def test_verify_deletes_a_mismatching_file_and_keeps_a_matching_one(tmp_path):
    path = tmp_path / "w.h5"
    path.write_bytes(b"weights")
    sha256 = hashlib.sha256(b"weights").hexdigest()
    weights.verify(path, sha256.upper(), "127.0.0.1")
    assert path.exists()
    with pytest.raises(UserError, match=f"sha256 {sha256}, not the expected 0{{63}}"):
        weights.verify(path, "0" * 64, "127.0.0.1")
    assert not path.exists()


def test_a_file_with_the_expected_hash_is_saved_and_loads(served, tmp_path):
    folder, address = served
    # The smallest base: a real weights file of its architecture, served under Keras 3's suffix.
    original = models.application("mobilenetv2")(include_top=False, weights=None)
    original.save_weights(folder / "mobilenetv2.weights.h5")
    expected = hashlib.sha256((folder / "mobilenetv2.weights.h5").read_bytes()).hexdigest()
    out = tmp_path / "resources" / "weights" / "mobilenetv2_imagenet_notop.weights.h5"
    weights.fetch_imagenet_weights(
        "mobilenetv2", out, url=f"{address}/mobilenetv2.weights.h5", expected_hash=expected
    )
    assert [path.name for path in out.parent.iterdir()] == [out.name]
    loaded = models.application("mobilenetv2")(include_top=False, weights=str(out))
    assert all(
        (a == b).all() for a, b in zip(original.get_weights(), loaded.get_weights(), strict=True)
    )


def test_weights_without_a_published_hash_are_refused_before_any_download(tmp_path):
    out = tmp_path / "mobilenetv2_imagenet_notop.weights.h5"
    # Port 9 (discard) on the loopback: a download attempt would fail with a network error.
    with pytest.raises(UserError, match="publishes no hash .* set conv_base.weights"):
        weights.fetch_imagenet_weights("mobilenetv2", out, url="http://127.0.0.1:9/m.h5")
    assert not out.exists()
