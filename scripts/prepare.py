from smallcnn.data import prepare
from smallcnn.logs import job_log

with job_log(snakemake.log[0]):
    prepare(
        source=snakemake.input.source,
        manifest=snakemake.output.manifest,
        rejections=snakemake.output.rejections,
        min_side=snakemake.params.min_side,
        max_image_pixels=snakemake.params.max_image_pixels,
        max_archive_bytes=snakemake.params.max_archive_bytes,
        workers=snakemake.threads,
        near_duplicate_check=dict(snakemake.params.near_duplicates),
        near_duplicate_summary=snakemake.output.near_duplicates,
        corrections=snakemake.input.get("corrections") or None,
    )
