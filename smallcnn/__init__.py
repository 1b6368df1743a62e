"""smallcnn: image classifiers on small datasets, the way DLwP ch. 5 teaches."""

import os

# TensorFlow reads this once, when it is first imported, and leaves its oneDNN CPU kernels off
# by default on CPUs without AVX-512 VNNI/BF16 or AMX. They are faster there too: +24% VGG16
# inference and +20% training of the small convnet on a 2-core AVX2 AMD EPYC (bench/levers.py).
# Set here because every script imports smallcnn before TensorFlow; TF_ENABLE_ONEDNN_OPTS=0 in
# the environment turns them off.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

__version__ = "0.1.0"
