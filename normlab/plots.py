"""The grid's figures, readable at a glance: one panel per dataset and stem, each norm in its own colour and marker
(hollow markers of decreasing size, so that runs with equal results stay visible on top of each other), whole-number
epochs, and bars labelled horizontally in the summary table's order.

results are histories in table order (normlab.experiments.in_table_order).
"""
from pathlib import Path

# Figures without pyplot: they go to files only, and a notebook's own plotting backend stays as it was.
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from normlab.train import steady_epoch_seconds

# colour, marker, and the size of marker and line: drawn in this order, a run that coincides with an earlier one
# shows as a thinner line and a smaller marker inside it
NORM_STYLES = {"BN": ("tab:blue", "o", 11, 4.5), "LN": ("tab:orange", "s", 8.5, 3.3),
               "IN": ("tab:green", "^", 6.5, 2.3), "GN": ("tab:red", "D", 4.5, 1.5), "none": ("black", "x", 4, 0.8)}
OTHER_STYLE = ("tab:purple", "v", 4, 0.8)


def plot_results(results, out_dir):
    """Save the figures under out_dir and return their paths: test accuracy per epoch; and per run the final
    weights' test accuracy, plainly and with flip TTA, next to its steady seconds per epoch."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    note = " (SYNTHETIC data: smoke test only)" if any(h["data"]["synthetic"] for h in results) else ""
    return [_save(accuracy_figure(results, note), out_dir / "accuracy_vs_epoch.png"),
            _save(final_figure(results, note), out_dir / "final_accuracy_and_speed.png")]


def _panels(results, key):
    """The distinct values of key in results, in their order."""
    return list(dict.fromkeys(h[key] for h in results))


def accuracy_figure(results, note=""):
    """Test accuracy per epoch: a row per dataset, a column per stem, a line per norm."""
    datasets, stems = _panels(results, "dataset"), _panels(results, "stem")
    figure = Figure(figsize=(5.5 * len(stems), 3.8 * len(datasets)))
    axes = figure.subplots(len(datasets), len(stems), squeeze=False, sharey="row")
    for row, dataset in enumerate(datasets):
        for column, stem in enumerate(stems):
            axis = axes[row][column]
            for h in (h for h in results if h["dataset"] == dataset and h["stem"] == stem):
                colour, marker, size, width = NORM_STYLES.get(h["norm_type"], OTHER_STYLE)
                axis.plot([e["epoch"] for e in h["epochs"]], [e["test_accuracy"] for e in h["epochs"]],
                          color=colour, marker=marker, markersize=size, markerfacecolor="none", linewidth=width,
                          label=h["norm_type"])
            axis.set_title(f"{dataset}, {stem} stem", fontsize=11)
            axis.set_xlabel("epoch")
            axis.xaxis.set_major_locator(MaxNLocator(integer=True))
            axis.yaxis.set_major_formatter(PercentFormatter(1.0))
            axis.grid(alpha=0.3)
        axes[row][0].set_ylabel("test accuracy")
        axes[row][-1].legend(title="norm", fontsize=9, loc="upper left", bbox_to_anchor=(1.02, 1))
    figure.suptitle("Test accuracy after each epoch" + note, fontsize=12)
    figure.tight_layout()
    return figure


def final_figure(results, note=""):
    """Per run, top to bottom in table order: final test accuracy (plain, and with flip TTA hatched) and the steady
    seconds per epoch, with their values written beside the bars."""
    labels = [f"{h['dataset']}  {h['norm_type']}, {h['stem']} stem" for h in results]
    colours = [NORM_STYLES.get(h["norm_type"], OTHER_STYLE)[0] for h in results]
    places = range(len(results))
    figure = Figure(figsize=(13, 1.2 + 0.42 * len(results)))
    accuracy_axis, seconds_axis = figure.subplots(1, 2, sharey=True, width_ratios=[3, 2])
    plain = [final_or_zero(h, "test_accuracy") for h in results]
    tta = [final_or_zero(h, "tta_test_accuracy") for h in results]
    accuracy_axis.barh([y - 0.2 for y in places], plain, height=0.4, color=colours, label="plain")
    accuracy_axis.barh([y + 0.2 for y in places], tta, height=0.4, color=colours, alpha=0.45, hatch="//",
                       label="with flip TTA")
    for y, value, with_tta in zip(places, plain, tta):
        accuracy_axis.text(value, y - 0.2, f" {value:.1%}", va="center", fontsize=8)
        accuracy_axis.text(with_tta, y + 0.2, f" {with_tta:.1%}", va="center", fontsize=7, color="dimgray")
    accuracy_axis.set_xlim(0, 1.12)
    accuracy_axis.xaxis.set_major_formatter(PercentFormatter(1.0))
    accuracy_axis.set_title("final test accuracy (averaged weights)" + note, fontsize=11)
    accuracy_axis.legend(fontsize=9, loc="lower right")
    seconds = [steady_epoch_seconds(h) or 0.0 for h in results]
    seconds_axis.barh(places, seconds, color=colours)
    for y, value in zip(places, seconds):
        seconds_axis.text(value, y, f" {value:.2f} s", va="center", fontsize=8)
    seconds_axis.set_xlim(0, 1.25 * max(seconds + [1e-9]))
    seconds_axis.set_title("seconds per epoch (median, warm-up left out)", fontsize=11)
    accuracy_axis.set_yticks(list(places), labels, fontsize=9)
    accuracy_axis.invert_yaxis()  # the first row of the table at the top (the axes share y)
    for axis in (accuracy_axis, seconds_axis):
        axis.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    return figure


def final_or_zero(history, key):
    """A run's final figure, or 0 for a run without one (diverged)."""
    return (history.get("final") or {}).get(key) or 0.0


def _save(figure, path):
    figure.savefig(path, dpi=110, bbox_inches="tight")
    return path
