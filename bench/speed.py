"""Speed of the pipeline against the book's way on the same machine, data and run.

Feature extraction (VGG16 base) and one epoch of the augmented model, each measured three ways:
(a) the book's: ImageDataGenerator.flow_from_directory, conv_base.predict per batch / model.fit
    on the generator (float32, as the book);
(b) the pipeline's own public functions (smallcnn.features.extract_features; smallcnn.datasets +
    smallcnn.models + one model.fit epoch), at the precision `precision` resolves to here;
(c) the compute bound: the same base / model on tensors already in memory, at (b)'s precision.
Also the peak RSS of the pipeline's feature extraction at N and 4N images, and (issue 13) one
epoch of frozen and finetuned with validation on cached frozen-layer outputs against the same
epoch without, plus the largest difference of their validation figures on the same weights.

    .venv/bin/python bench/speed.py --quick      # < 10 min on 2 cores
    .venv/bin/python bench/speed.py              # 2,000 / 1,000 images as in the book
    .venv/bin/python bench/speed.py --quick --only-cached    # the cached validation alone
    .venv/bin/python bench/speed.py --quick --only features  # feature extraction and memory

Prints markdown tables and writes results/bench/speed.json. Each measurement is a module of its
own: speed_features (and memory), speed_epoch, speed_cached; tables prints them.
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# After the environment that silences TensorFlow.
import common  # noqa: E402
import speed_cached  # noqa: E402
import speed_epoch  # noqa: E402
import speed_features  # noqa: E402
import tables  # noqa: E402

# What each part measures, the module that measures it, and its block in speed.json.
PARTS = {
    "features": speed_features,
    "epoch": speed_epoch,
    "cached": speed_cached,
}
BLOCKS = {
    "features": "feature_extraction",
    "epoch": "augmented_epoch",
    "cached": "cached_validation",
}
# full: the book's 2,000 training images; quick: fewer, enough for stable medians.
PRESETS = {
    "full": {"images": 2000, "repeats": 3, "epochs": 3},
    "quick": {"images": 160, "repeats": 3, "epochs": 3},
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer images (under 10 minutes)")
    parser.add_argument("--images", type=int, help="training images (feature extraction set)")
    parser.add_argument("--size", type=int, help="image side in pixels (default 150)")
    parser.add_argument("--repeats", type=int, help="timed repeats of feature extraction")
    parser.add_argument("--epochs", type=int, help="timed epochs after the warm-up epoch")
    parser.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "float32", "mixed"],
        help="the pipeline's precision setting, as config.yaml's `precision`",
    )
    parser.add_argument(
        "--batch-size", type=int, default=32, help="the pipeline's feature batch (features.smk)"
    )
    parser.add_argument("--data", type=Path, default=common.PHOTOS_ZIP, help="Kaggle-layout zip")
    parser.add_argument("--out", type=Path, default=common.REPO / "results/bench/speed.json")
    parser.add_argument(
        "--only",
        choices=PARTS,
        action="append",
        help="measure only this part (repeatable): features (and their memory), epoch, cached",
    )
    parser.add_argument(
        "--only-cached",
        action="store_true",
        help="measure only the cached validation of frozen and finetuned: --only cached",
    )
    args = parser.parse_args(argv)
    args.parts = ["cached"] if args.only_cached else [p for p in PARTS if p in (args.only or PARTS)]
    preset = PRESETS["quick" if args.quick else "full"]
    args.images = args.images or preset["images"]
    args.repeats = args.repeats or preset["repeats"]
    args.epochs = args.epochs or preset["epochs"]
    args.size = args.size or 150
    if args.images < 4 or args.images % 2:
        parser.error("--images must be an even number of at least 4")
    return args


def pipeline_policy(precision):
    """The Keras dtype policy the pipeline picks for `precision` on this machine."""
    import tensorflow as tf

    from smallcnn import devices

    has_gpu = bool(tf.config.list_physical_devices("GPU"))
    return devices.resolve_policy(precision, has_gpu, devices.cpu_flags())


def main(argv=None):
    args = parse_args(argv)
    started = time.perf_counter()
    load_before = common.load_average()
    n_train = args.images
    n_validation = max(2, args.images // 2)
    with tempfile.TemporaryDirectory(prefix="smallcnn-speed-") as tmp:
        work = Path(tmp)
        data = common.make_data(
            work / "data",
            {"train": n_train // 2, "validation": n_validation // 2, "warmup": 2},
            args.data,
        )
        train_dir, validation_dir = work / "data/train", work / "data/validation"
        common.read_all_files(work / "data")
        print(f"data: {data}", file=sys.stderr)
        with (
            common.Worker(common.tensorflow_defaults_env()) as book,
            common.Worker(os.environ, preload=["smallcnn"]) as pipeline,
        ):
            setup = {
                "book": book(common.tensorflow_setup),
                "pipeline": pipeline(common.tensorflow_setup),
            }
            policy = pipeline(pipeline_policy, args.precision)
            machine = pipeline(common.machine)
            workers = (book, pipeline)
            blocks = {}
            if "features" in args.parts:
                blocks["features"] = speed_features.measure(
                    args, workers, train_dir, work / "data/warmup", work, policy
                )
            if "epoch" in args.parts:
                blocks["epoch"] = speed_epoch.measure(
                    args, workers, train_dir, validation_dir, work, policy
                )
            if "cached" in args.parts:
                blocks["cached"] = speed_cached.measure(
                    args, pipeline, train_dir, validation_dir, work
                )
        if "features" in args.parts:
            memory = speed_features.measure_memory(args, train_dir, work)
    result = {
        "machine": machine,
        "load_average": {"before": load_before, "after": common.load_average()},
        "data": data,
        "precision": {
            "setting": args.precision,
            "pipeline_and_compute_bound": policy,
            "book": "float32",
        },
        # (a) runs with TensorFlow's defaults, (b) and (c) with whatever smallcnn sets up.
        "tensorflow_setup": setup,
        "settings": {
            "mode": "quick" if args.quick else "full",
            "parts": args.parts,
            "image_size": args.size,
            "train_images": n_train,
            "validation_images": n_validation,
            "repeats": args.repeats,
            "epochs": args.epochs,
            "feature_batch_size": {"book": common.BOOK_BATCH, "pipeline": args.batch_size},
            "epoch_batch_size": common.BOOK_BATCH,
        },
        # Supplementary: the ratios in CPU time, less disturbed by other jobs on the machine.
        "cpu_time_ratios": {},
    }
    targets = {}
    for part, block in blocks.items():
        module = PARTS[part]
        result[BLOCKS[part]] = block
        result.update(module.ratios(block))
        result["cpu_time_ratios"].update(module.ratios(block, "median_cpu_seconds"))
        targets.update(module.TARGETS)
    if "features" in blocks:
        result["memory"] = memory
    if "cached" in blocks:
        result["validation_max_abs_diff"] = blocks["cached"]["validation_max_abs_diff"]
    result["targets"] = {key: f"{op} {bound}" for key, (op, bound) in targets.items()}
    result["targets_met"] = {key: tables.met(*targets[key], result[key]) for key in targets}
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"{machine['cpu_model']}, {machine['cores']} cores, {machine['date']}; "
        f"load average before {load_before}, after {result['load_average']['after']}; "
        f"{data}; (b)/(c) precision {policy}; oneDNN (a) {setup['book']['onednn']}, "
        f"(b)/(c) {setup['pipeline']['onednn']}\n"
    )
    for part in blocks:
        print(PARTS[part].table(result) + "\n")
    print(f"\nwrote {args.out} in {result['wall_seconds']:.0f} s")
    return result


if __name__ == "__main__":
    main()
