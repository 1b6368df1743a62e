"""Data stage: fetch the source, check every file, split into train / validation / test."""

from smallcnn import split_sizes
from smallcnn.fingerprint import check_downloaded_sha256, source_fingerprint
from smallcnn.redact import redact_url

# The schema cannot add numbers: fractions over 1, or counts more than max_per_class lets a
# class have, stop the run here, before any job. A class short of images stops the split job.
split_sizes.check(config["split"])

# What the prepare and split rules read: a downloaded archive, the user's zip or folder (read in
# place), or the generated demo folder.
DATA_SOURCE = {
    "local": config["data"]["path"],
    "demo": "resources/demo",
}.get(config["data"]["source"], f"resources/downloads/{config['data']['source']}.zip")
LOCAL_SOURCE = config["data"]["source"] == "local"
# Snakemake dates a folder by its own mtime, blind to files added or rewritten in its class
# folders (and sees a touched folder as new). So prepare and split read a local source through
# ancient() and rerun when its fingerprint param changes: every file's path, size and mtime, or
# with data.fingerprint: content, every file's sha256.
FINGERPRINT = config["data"]["fingerprint"] if LOCAL_SOURCE else None
# The content sums' cache is state of this working directory, as Snakemake's metadata beside it:
# kept between runs, dropped with .snakemake, and never copied with the data in resources/
# (inodes and ctimes mean nothing on another file system).
SOURCE_FINGERPRINT = (
    source_fingerprint(DATA_SOURCE, FINGERPRINT, ".snakemake/smallcnn/source-sums.json")
    if LOCAL_SOURCE
    else None
)
# local(): read in place, also with a default storage provider (which would otherwise look
# for it in the bucket); prepare and split then run on this machine (Snakefile).
SOURCE_INPUT = ancient(local(DATA_SOURCE)) if LOCAL_SOURCE else DATA_SOURCE
# The user's label fixes: an input like the source (local() likewise), so that editing them
# reruns the data stage.
CORRECTIONS = config["data"]["corrections"]
# Checked where Snakemake runs: a job elsewhere (a pod) reads this file too but has no copy of the
# corrections; prepare, which reads them, runs here (Snakefile).
if CORRECTIONS and not workflow.remote_exec and not os.path.isfile(CORRECTIONS):
    sys.exit(
        f"error in config: data.corrections={CORRECTIONS!r}: no such file (a CSV with columns "
        "file,label, relative to the working directory)"
    )

# data.sha256 is checked here, against the archive already downloaded, rather than as a param of
# download: pinning the right sum then reruns nothing (no second download, no retraining), and a
# wrong one stops every run, dry runs included, before any job starts. A new download checks it
# in the download job.
if config["data"]["source"] in ("microsoft", "kaggle", "url"):
    check_downloaded_sha256(
        DATA_SOURCE,
        f"resources/downloads/{config['data']['source']}.json",
        config["data"]["sha256"],
    )


# What names the dataset of each downloaded source, and nothing else, so that keys of other
# sources change nothing. An address without its credentials: Snakemake stores params in
# .snakemake/metadata, and a new token for the same file is not a new dataset.
DOWNLOAD_IDENTITY = {
    "kaggle": config["data"]["kaggle_competition"],
    "url": redact_url(config["data"]["url"]),
}


rule download:
    output:
        archive="resources/downloads/{source}.zip",
        record="resources/downloads/{source}.json",
    log:
        "logs/download/{source}.log",
    wildcard_constraints:
        source="microsoft|kaggle|url",
    conda:
        "../envs/smallcnn.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=120,
    params:
        # The script reads the full address and data.sha256 from the config: see above.
        dataset=lambda wildcards: DOWNLOAD_IDENTITY.get(wildcards.source),
        code=code("download"),
    script:
        "../scripts/download.py"


rule make_demo:
    output:
        directory("resources/demo"),
    log:
        "logs/make_demo.log",
    conda:
        "../envs/smallcnn.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        seed=config["seed"],
        per_class=split_sizes.images_needed(config["split"]),
        code=code("make_demo"),
    script:
        "../scripts/make_demo.py"


rule prepare:
    input:
        source=SOURCE_INPUT,
        corrections=local(CORRECTIONS) if CORRECTIONS else [],
    output:
        manifest="results/data/manifest.csv",
        rejections="results/data/rejections.json",
        near_duplicates="results/data/near_duplicates.json",
    log:
        "logs/prepare.log",
    benchmark:
        "benchmarks/prepare.tsv"
    conda:
        "../envs/smallcnn.yaml"
    threads: 2
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        min_side=config["data"]["min_side"],
        max_image_pixels=config["data"]["max_image_pixels"],
        max_archive_bytes=config["data"]["max_archive_bytes"],
        near_duplicates=config["data"]["near_duplicates"],
        fingerprint=FINGERPRINT,
        source_fingerprint=SOURCE_FINGERPRINT,
        code=code("prepare"),
    script:
        "../scripts/prepare.py"


rule split:
    input:
        source=SOURCE_INPUT,
        manifest="results/data/manifest.csv",
    output:
        splits="results/data/splits.csv",
        train=directory("results/data/train"),
        validation=directory("results/data/validation"),
        test=directory("results/data/test"),
        # How many near-duplicate groups this split would have put on two sides unchecked.
        straddling="results/data/near_duplicates_split.json",
    log:
        "logs/split.log",
    benchmark:
        "benchmarks/split.tsv"
    conda:
        "../envs/smallcnn.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        split=config["split"],
        seed=config["seed"],
        fingerprint=FINGERPRINT,
        source_fingerprint=SOURCE_FINGERPRINT,
        code=code("split"),
    script:
        "../scripts/split.py"
