"""ImageNet weights of a conv base, fetched by their own job (never inside a training job)."""

import logging
import tempfile
import urllib.parse
from pathlib import Path

import keras

from smallcnn import models, registry
from smallcnn.atomic import atomic_write
from smallcnn.errors import UserError
from smallcnn.fingerprint import file_hash
from smallcnn.redact import redact

log = logging.getLogger(__name__)


def verify(path, expected, host):
    """Delete `path` and stop unless its hash is `expected` (md5 or sha256, told by its length:
    Keras publishes md5 for its older files)."""
    algorithm = "sha256" if len(expected) == 64 else "md5"
    actual = file_hash(path, algorithm)
    if actual != expected.lower():
        Path(path).unlink()
        raise UserError(
            f"the weights downloaded from {host} have {algorithm} {actual}, not the "
            f"expected {expected}: the file was corrupted or substituted and has been deleted; "
            "download again, or set conv_base.weights to a local .weights.h5 file you trust"
        )


def fetch_imagenet_weights(base, out, url=None, expected_hash=None):
    """Download the ImageNet weights of `base` without its top, verify them against the hash
    Keras publishes, and save them as `out` (.weights.h5, the format build_conv_base loads).

    `url` overrides Keras' address (a mirror of the same file); `expected_hash` (md5 or sha256)
    overrides the published hash, for a file that differs from Keras' or has none published.
    """
    if base not in registry.BASES:
        raise UserError(
            f"no ImageNet weights known for {base!r}: choose one of {', '.join(registry.BASES)}"
        )
    known_url = registry.BASES[base].imagenet_notop_url
    published = registry.BASES[base].imagenet_notop_hash
    url = url or known_url
    expected_hash = expected_hash or published
    if expected_hash is None:
        raise UserError(
            f"Keras publishes no hash for the {base} ImageNet weights, so a download cannot be "
            f"verified: fetch {known_url} yourself, check it, and set conv_base.weights to its path"
        )
    host = urllib.parse.urlparse(url).hostname
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".download-") as tmp:
        try:
            downloaded = keras.utils.get_file(
                fname=Path(urllib.parse.urlparse(url).path).name,
                origin=url,
                cache_dir=tmp,
                cache_subdir=".",
            )
        except Exception as error:  # get_file wraps every network failure in a plain Exception
            raise UserError(
                f"cannot download the {base} ImageNet weights from {host} ({redact(str(error))}); "
                "without network, set conv_base.weights to the path of a local .weights.h5 file"
            ) from None
        # Checked here rather than by get_file's file_hash, whose error names neither the hash
        # it found nor the file, and which leaves the bad file in place.
        verify(downloaded, expected_hash, host)
        try:
            model = models.application(base)(include_top=False, weights=downloaded)
        except (ValueError, OSError) as error:
            raise UserError(f"{host} sent no {base} weights file ({error})") from None
        with atomic_write(out, suffix=".partial.weights.h5") as partial:
            model.save_weights(partial)
    log.info(
        "saved %s ImageNet weights from %s (%s verified) to %s", base, host, expected_hash, out
    )
