"""How long Snakemake's look at a local source takes in each `data.fingerprint` mode, on the
4,000-photo zip and on a generated folder of 25,000 files.

    .venv/bin/python bench/fingerprint.py [--zip PATH] [--files 25000] [--rounds 3]

For each source: `metadata`; `content` without a cache (cold: every byte read and hashed); and
`content` with the cache the run before wrote (warm: a stat per file, nothing read). Rounds are
interleaved and the median is reported, wall and CPU time. The page cache is warm throughout
(the folder was just written; dropping it needs root and disturbs the other users of the
machine), so cold `content` measures reading from memory and sha256, not the disk.

Writes results/bench/fingerprint.json and prints a markdown table.
"""

import argparse
import datetime
import json
import shutil
import statistics
import tempfile
import time
import zipfile
from pathlib import Path

import common

from smallcnn import fingerprint
from smallcnn.fingerprint import source_fingerprint

OUT = common.REPO / "results" / "bench" / "fingerprint.json"
CLASSES = 2


def make_folder(zip_path, dest, files):
    """`files` files in CLASSES class folders, the zip's members' bytes in turn: real sizes."""
    with zipfile.ZipFile(zip_path) as archive:
        members = [info for info in archive.infolist() if not info.is_dir()]
        contents = [archive.read(info) for info in members[: min(len(members), files)]]
    for k in range(CLASSES):
        (dest / f"class{k}").mkdir(parents=True)
    for i in range(files):
        (dest / f"class{i % CLASSES}" / f"{i:06d}.jpg").write_bytes(contents[i % len(contents)])
    return dest


def make_zip(dest, files, size=20_000):
    """A stand-in for the photos when the zip is absent: random bytes of a photo's size."""
    import numpy as np

    rng = np.random.default_rng(0)
    with zipfile.ZipFile(dest, "w") as archive:
        for i in range(files):
            data = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
            archive.writestr(f"train/{('cat', 'dog')[i % 2]}.{i}.jpg", data)
    return dest


def measure(source, mode, cache):
    wall, cpu = time.perf_counter(), time.process_time()
    value = source_fingerprint(source, mode, cache)
    return time.perf_counter() - wall, time.process_time() - cpu, value


def bench(source, rounds, scratch):
    """{case: {"wall_s", "cpu_s"}} for metadata, content cold and content warm on `source`."""
    samples = {"metadata": [], "content_cold": [], "content_warm": []}
    for round_number in range(rounds):
        cache = scratch / f"sums-{source.name}-{round_number}.json"
        samples["metadata"].append(measure(source, "metadata", None))
        samples["content_cold"].append(measure(source, "content", cache))
        samples["content_warm"].append(measure(source, "content", cache))
    values = {case: {sample[2] for sample in runs} for case, runs in samples.items()}
    assert values["content_cold"] == values["content_warm"], "the cache changed the fingerprint"
    return {
        case: {
            "wall_s": round(statistics.median(sample[0] for sample in runs), 3),
            "cpu_s": round(statistics.median(sample[1] for sample in runs), 3),
        }
        for case, runs in samples.items()
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zip", type=Path, default=common.PHOTOS_ZIP)
    parser.add_argument("--files", type=int, default=25_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    # Files the benchmark has just written count as settled, as a user's photos would be.
    fingerprint.RACY_SECONDS = 0
    load_before = common.load_average()
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        zip_path = args.zip if args.zip.is_file() else make_zip(scratch / "photos.zip", 200)
        folder = make_folder(zip_path, scratch / "folder", args.files)
        sources = {
            f"zip ({zip_path.name}, {zip_path.stat().st_size / 1e6:.0f} MB)": zip_path,
            f"folder ({args.files:,} files, "
            f"{sum(p.stat().st_size for p in folder.rglob('*.jpg')) / 1e6:.0f} MB)": folder,
        }
        results = {name: bench(path, args.rounds, scratch) for name, path in sources.items()}
        shutil.rmtree(folder)
    flags = common.cpu_flags()
    report = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu_model": common.cpu_model(),
        "cpu_flags": sorted(flag for flag in ("avx2", "avx512_bf16") if flag in flags),
        "load_average_before": load_before,
        "load_average_after": common.load_average(),
        "rounds": args.rounds,
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"{report['cpu_model']}, flags {report['cpu_flags']}, load {load_before} -> "
        f"{report['load_average_after']}, median of {args.rounds}"
    )
    print("| source | metadata | content, cold cache | content, warm cache |")
    print("| --- | --- | --- | --- |")
    for name, cases in results.items():
        cells = [f"{c['wall_s']:.2f} s (CPU {c['cpu_s']:.2f} s)" for c in cases.values()]
        print(f"| {name} | " + " | ".join(cells) + " |")
    return report


if __name__ == "__main__":
    main()
