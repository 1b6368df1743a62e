"""smallcnn: image classifiers on small datasets, the way DLwP ch. 5 teaches."""

__version__ = "0.1.0"
