"""Draws figure3_imdb.png for docs/results/paper.md.

The numbers are typed in from the Figure 3 table on that page (test error %, mean and std over
seeds 0, 1, 2, from `python studies/paper_study.py --parts imdb --seeds 0,1,2 --lm-steps 4800
--test-docs 2000`); they are not re-measured here. Run: python docs/assets/figure3_imdb.py
"""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

LABELS = [100, 500, 1000]
SERIES = {
    "ULMFiT": ([37.55, 30.82, 25.37], [2.60, 1.46, 2.51]),
    "from scratch": ([49.95, 44.63, 50.10], [0.44, 4.67, 0.52]),
    "TF-IDF + logistic regression": ([33.98, 18.37, 15.58], [10.85, 1.50, 0.82]),
}


def main() -> None:
    fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=110)
    for name, (mean, std) in SERIES.items():
        ax.errorbar(LABELS, mean, yerr=std, marker="o", capsize=3, label=name)
    ax.set_xscale("log")
    ax.set_xticks(LABELS, [str(n) for n in LABELS])
    ax.set_xlabel("labelled training reviews")
    ax.set_ylabel("test error % (2,000 reviews)")
    ax.set_title("IMDb, small LM from WikiText-2 (mean ± std, 3 seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(Path(__file__).with_name("figure3_imdb.png"))


if __name__ == "__main__":
    main()
