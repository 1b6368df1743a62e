from smallcnn.logs import job_log
from smallcnn.report import build_report

with job_log(snakemake.log[0]):
    build_report(
        inputs=snakemake.input,
        params=snakemake.params,
        out=snakemake.output.html,
        figures_dir=snakemake.output.figures,
    )
