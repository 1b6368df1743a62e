from smallcnn.logs import job_log
from smallcnn.training import train

with job_log(snakemake.log[0]):
    train(
        settings=dict(snakemake.params.settings),
        inputs=dict(snakemake.input.items()),
        model_path=snakemake.output.model,
        history_path=snakemake.output.history,
        summary_path=snakemake.output.summary,
        tensorboard_dir=snakemake.output.tensorboard,
        backup_dir=snakemake.params.backup_dir,
    )
