"""The report's charts of experiments over seeds."""

import matplotlib.pyplot as plt
import numpy as np

from smallcnn import figures

SEED_ALPHA = 0.55


def accuracy_chart(rows):
    """Mean test accuracy with its 95% interval per experiment, every seed as a dot, and the
    book's figure where it applies.

    `rows`: dicts with name, accuracy, ci_low, ci_high, seed_accuracies and book (or None).
    """
    names = [row["name"] for row in rows]
    positions = np.arange(len(rows))[::-1]
    fig, ax = plt.subplots(figsize=(7.5, 0.5 * len(rows) + 1.3))
    accuracy = np.array([row["accuracy"] for row in rows])
    # Clipped: rounding in the metrics file may put a bound a hair on the wrong side.
    low = np.maximum(accuracy - np.array([row["ci_low"] for row in rows]), 0)
    high = np.maximum(np.array([row["ci_high"] for row in rows]) - accuracy, 0)
    ax.errorbar(
        accuracy * 100,
        positions,
        xerr=[low * 100, high * 100],
        fmt="o",
        color=figures.TRAIN_COLOUR,
        capsize=4,
        label="mean test accuracy, 95% interval",
    )
    several = [row for row in rows if len(row["seed_accuracies"]) > 1]
    for row, position in zip(rows, positions, strict=True):
        if len(row["seed_accuracies"]) > 1:
            values = np.asarray(row["seed_accuracies"]) * 100
            ax.scatter(
                values,
                np.full(len(values), position - 0.18),
                s=14,
                color=figures.VALIDATION_COLOUR,
                alpha=SEED_ALPHA,
                label="one seed" if row is several[0] else None,
                zorder=3,
            )
    book = [(row["book"], pos) for row, pos in zip(rows, positions, strict=True) if row["book"]]
    if book:
        ax.scatter(
            [value * 100 for value, _ in book],
            [pos for _, pos in book],
            marker="D",
            facecolors="none",
            edgecolors=figures.BOOK_COLOUR,
            s=50,
            label="the book's figure",
            zorder=3,
        )
    ax.set_yticks(positions, names, **figures.LITERAL)
    ax.set_xlabel("test accuracy (%)")
    lowest = min(
        [row["ci_low"] for row in rows]
        + [min(row["seed_accuracies"]) for row in rows]
        + [value for value, _ in book]
    )
    ax.set_xlim(max(0, lowest * 100 - 5), 100.5)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, frameon=False, fontsize=9)
    return fig


def learning_curves(runs, title):
    """Accuracy and loss per epoch of every seed of one experiment, train solid and validation
    dashed, each seed's kept epoch marked with a dot on its validation curve."""
    # Small enough for two panels side by side in the report: a dozen experiments stay readable.
    fig, axes = plt.subplots(1, 2, figsize=(5.4, 2.5), sharex=True)
    several = len(runs) > 1
    for index, run in enumerate(runs):
        history = run.history
        epochs = history["epoch"].to_numpy() + 1
        best = run.metrics["best_epoch"]
        alpha = SEED_ALPHA if several else 1.0
        for ax, metric in ((axes[0], "accuracy"), (axes[1], "loss")):
            ax.plot(
                epochs,
                history[metric],
                "-",
                color=figures.TRAIN_COLOUR,
                alpha=alpha,
                lw=1.2,
                label="train" if index == 0 else None,
            )
            validation = f"val_{metric}"
            if validation in history:
                ax.plot(
                    epochs,
                    history[validation],
                    "--",
                    color=figures.VALIDATION_COLOUR,
                    alpha=alpha,
                    lw=1.2,
                    label="validation" if index == 0 else None,
                )
                if best and best <= len(history):
                    ax.plot(
                        best,
                        history[validation].iloc[best - 1],
                        "o",
                        color=figures.BEST_COLOUR,
                        ms=5,
                        label=("kept epoch" + ("s" if several else "")) if index == 0 else None,
                    )
            ax.set_title(metric, fontsize=9)
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
            # Whole epochs only: a two-epoch run must not show epoch 1.5.
            ax.xaxis.get_major_locator().set_params(integer=True)
    axes[0].legend(fontsize=7, loc="best")
    learning_rates(axes[1], runs, several)
    fig.suptitle(title, fontsize=10, **figures.LITERAL)
    fig.tight_layout()
    return fig


def learning_rates(ax, runs, several):
    """The learning rate of every epoch, as a grey step line on a log scale to the right of the
    loss panel: where it drops (reduce_lr) or follows a schedule, the loss can be read beside it."""
    drawn = [run for run in runs if "learning_rate" in run.history and len(run.history)]
    if not drawn:
        return
    rates_axis = ax.twinx()
    for index, run in enumerate(drawn):
        rates_axis.step(
            run.history["epoch"].to_numpy() + 1,
            run.history["learning_rate"],
            where="mid",
            color=figures.LR_COLOUR,
            alpha=SEED_ALPHA if several else 0.9,
            lw=1.0,
            ls=":",
            label="learning rate" if index == 0 else None,
        )
    rates_axis.set_yscale("log")
    rates = [rate for run in drawn for rate in run.history["learning_rate"]]
    if min(rates) == max(rates):
        # A constant rate mid-height, not on the frame matplotlib would draw it on.
        rates_axis.set_ylim(min(rates) / 3, max(rates) * 3)
    rates_axis.set_ylabel("learning rate", fontsize=7, color=figures.LR_COLOUR)
    rates_axis.tick_params(axis="y", labelsize=6, colors=figures.LR_COLOUR)
    rates_axis.legend(fontsize=7, loc="upper right")
