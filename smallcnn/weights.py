"""ImageNet weights of a conv base, fetched by their own job (never inside a training job)."""

import logging
import os
import tempfile
import urllib.parse
from pathlib import Path

from smallcnn import models
from smallcnn.errors import UserError

log = logging.getLogger(__name__)

# keras.applications' own addresses of the weights without the classifier on top.
_KERAS = "https://storage.googleapis.com/tensorflow/keras-applications"
IMAGENET_NOTOP = {
    "vgg16": f"{_KERAS}/vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "resnet50": f"{_KERAS}/resnet/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "mobilenetv2": (
        f"{_KERAS}/mobilenet_v2/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
    ),
    "efficientnetb0": "https://storage.googleapis.com/keras-applications/efficientnetb0_notop.h5",
}


def fetch_imagenet_weights(base, out, url=None):
    """Download the ImageNet weights of `base` without its top and save them as `out`
    (.weights.h5, the format build_conv_base loads). `url` overrides Keras' address."""
    import keras

    if base not in IMAGENET_NOTOP:
        raise UserError(
            f"no ImageNet weights known for {base!r}: choose one of {', '.join(IMAGENET_NOTOP)}"
        )
    url = url or IMAGENET_NOTOP[base]
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
                f"cannot download the {base} ImageNet weights from {host} ({error}); "
                "without network, set conv_base.weights to the path of a local .weights.h5 file"
            ) from None
        try:
            model = models.application(base)(include_top=False, weights=downloaded)
        except (ValueError, OSError) as error:
            raise UserError(f"{url} is not a {base} weights file ({error})") from None
        partial = out.with_name(out.name + ".partial.weights.h5")
        model.save_weights(partial)
        os.replace(partial, out)
    log.info("saved %s ImageNet weights from %s to %s", base, host, out)
