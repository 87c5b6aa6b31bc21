"""Chapter 6's tables and figure of the deployed members: equivalence, time, Eq. 6 against the stopwatch, memory.

:mod:`empir_lib.hardware.deploy_bench` measures and writes ``data/results/deploy/*.json``;
this module only lays those records out (paper section 3.3, Eq. 6).
"""
from __future__ import annotations

from matplotlib.figure import Figure

from ...core import settings
from ...core.tables import markdown_table
from ..plots.style import bits_colour


def runtimes_table(record: dict) -> str:
    """LiteRT against ONNX Runtime, ms per image, median [min-max] over the rounds."""
    t = record["seconds_per_image"]
    rows = [{"kind": kind, "batch": b, "litert": _ms(t[f"LiteRT {kind}, batch {b}"]),
             "ort": _ms(t[f"ONNX Runtime {kind}, batch {b}"]),
             "ratio": t[f"ONNX Runtime {kind}, batch {b}"]["median"] / t[f"LiteRT {kind}, batch {b}"]["median"]}
            for kind in ("float32", "int8") for b in (1, 100)]
    return markdown_table(rows, ["kind", "batch", "litert", "ort", "ratio"],
                          ["kernels", "batch", "LiteRT (ms/image)", "ONNX Runtime (ms/image)", "ONNX Runtime / LiteRT"],
                          {"ratio": ".2f"})


def _ms(spread: dict) -> str:
    """'median [min-max]' of a time spread, in ms."""
    return f"{1e3 * spread['median']:.3f} [{1e3 * spread['min']:.3f}-{1e3 * spread['max']:.3f}]"


def equivalence_table(record: dict) -> str:
    """Predictions of each deployed member and of the deployed vote that differ from Keras', per dataset."""
    rows = []
    for ds, r in record["datasets"].items():
        for m, row in r["members"].items():
            ints = sorted({k for k in row["kernels"].values() if not k.startswith("float")})
            rows.append({"dataset": ds, "what": m, "kernels": ", ".join(ints) or "float32 only",
                         "n": r["n"], "differ": row["differ"], "diff": row["max_abs_logit_diff"]})
        rows.append({"dataset": ds, "what": "EMPIR vote", "kernels": "", "n": r["n"], "differ": r["vote_differ"],
                     "diff": ""})
    return markdown_table(rows, ["dataset", "what", "kernels", "n", "differ", "diff"],
                          ["test set", "deployed", "integer kernels", "images", "predictions that differ",
                           "max abs logit difference"], {"n": ",", "diff": ".2g"})


def timing_table(record: dict) -> str:
    """Latency at batch 1 and throughput at batch 100, median [min-max] over the rounds, and the ratio to FP."""
    rows = []
    for ds, r in record["datasets"].items():
        fp = r["measured"][r["fp"]]
        for name, m in r["measured"].items():
            thr = m["throughput_per_s"]
            rows.append({"dataset": ds, "what": name, "latency": _ms(m["latency_s"]),
                         "lat_ratio": m["latency_s"]["median"] / fp["latency_s"]["median"],
                         "throughput": f"{thr['median']:,.0f} [{thr['min']:,.0f}-{thr['max']:,.0f}]",
                         "thr_ratio": fp["throughput_per_s"]["median"] / thr["median"]})
    return markdown_table(rows, ["dataset", "what", "latency", "lat_ratio", "throughput", "thr_ratio"],
                          ["dataset", "deployed", "latency, batch 1 (ms/image)", "time / FP",
                           "throughput, batch 100 (images/s)", "time / FP"],
                          {"lat_ratio": ".2f", "thr_ratio": ".2f"})


def eq6_table(record: dict) -> str:
    """Eq. 6's time overhead as the paper prices it, with the measured int8 rate, and from the measured
    member times, beside the measured ensemble, at batch 1 (latency) and batch 100 (throughput)."""
    rate = record["kernel_rate"]["int8_over_fp32_time"]["median"]
    rows = []
    for ds, r in record["datasets"].items():
        m = r["measured"]
        lat = {k: v["latency_s"]["median"] for k, v in m.items()}
        per_image = {k: 1 / v["throughput_per_s"]["median"] for k, v in m.items()}
        rows.append({"dataset": ds, "paper": r["eq6_paper"], "rate": r["eq6_measured_rate"],
                     "sum1": 1 + sum(lat[k] for k in r["lp"]) / lat[r["fp"]],
                     "sum100": 1 + sum(per_image[k] for k in r["lp"]) / per_image[r["fp"]],
                     "b1": lat["EMPIR"] / lat[r["fp"]], "b100": per_image["EMPIR"] / per_image[r["fp"]]})
    keys = ["paper", "rate", "sum1", "sum100", "b1", "b100"]
    return markdown_table(rows, ["dataset", *keys],
                          ["EMPIR ensemble", "Eq. 6, paper's model (ops/s ~ 1/k)",
                           f"Eq. 6, measured int8 rate ({rate:.2f})", "Eq. 6, measured members, batch 1",
                           "Eq. 6, measured members, batch 100", "measured ensemble, batch 1",
                           "measured ensemble, batch 100"], dict.fromkeys(keys, ".2f"))


def memory_table(record: dict) -> str:
    """Deployed file bytes and peak resident memory of the ensemble against the FP member."""
    rows = []
    for ds, by_batch in record["datasets"].items():
        for r in by_batch.values():
            for k, ratio in r["rss_over_fp"].items():
                rows.append({"dataset": ds, "batch": r["batch"], "what": k.replace("ensemble", "EMPIR"),
                             "fp": r["peak_rss_bytes"]["fp"]["median"] / 2**20,
                             "ens": r["peak_rss_bytes"][k]["median"] / 2**20, "ratio": ratio,
                             "files": r["files_over_fp"][k]})
    return markdown_table(rows, ["dataset", "what", "batch", "fp", "ens", "ratio", "files"],
                          ["dataset", "deployed", "batch", "FP peak RSS added (MiB)", "EMPIR peak RSS added (MiB)",
                           "memory / FP", "file bytes / FP"],
                          {"fp": ".1f", "ens": ".1f", "ratio": ".2f", "files": ".2f"})


def latency_figure(record: dict) -> Figure:
    """Latency (batch 1) and time per image (batch 100) of the grid's deployed members against their bits.

    Points are medians with min-max bars over the rounds, coloured by max(wbits, abits); the grey
    line is the FP member, the black dashes the paper's model (time = max(wbits, abits) / 32 of the
    FP member's).
    """
    grid = record["grid"]["members"]
    fp_id = next(m for m in grid if settings.is_full_precision(*settings.parse_precision(m)))
    lp = sorted((m for m in grid if m != fp_id),
                key=lambda m: (max(settings.parse_precision(m)), *settings.parse_precision(m)))
    fig = Figure(figsize=(10.5, 3.8), layout="constrained")
    fig.suptitle(f"{record['grid']['dataset']} members on ONNX Runtime: median, min-max over "
                 f"{record['rounds']} rounds", fontsize=10)
    for ax, key, title in zip(fig.subplots(1, 2), ("latency_s", "throughput_per_s"),
                              ("batch 1: latency per image", "batch 100: time per image")):
        def per_image(s: dict, key: str = key) -> tuple[float, float, float]:
            if key == "latency_s":
                return 1e3 * s["median"], 1e3 * s["min"], 1e3 * s["max"]
            return 1e3 / s["median"], 1e3 / s["max"], 1e3 / s["min"]

        fp = per_image(grid[fp_id][key])[0]
        seen = set()
        for x, m in enumerate(lp):
            w, a = settings.parse_precision(m)
            bits = max(w, a)
            mid, lo, hi = per_image(grid[m][key])
            ax.errorbar(x, mid, [[mid - lo], [hi - mid]], fmt="o", color=bits_colour(bits), capsize=3,
                        label=None if bits in seen else f"max(w, a) = {bits}")
            ax.plot(x, fp * bits / 32, "_", color="black", ms=14, mew=2,
                    label="Eq. 6, paper's model: FP x max(w, a)/32" if not seen else None)
            seen.add(bits)
        ax.axhline(fp, color="tab:gray", label=f"FP member ({fp_id})")
        ax.set_xticks(range(len(lp)), [settings.precision_tag(*settings.parse_precision(m)) for m in lp])
        ax.tick_params(axis="x", labelsize=8, rotation=45)
        ax.set_ylabel("ms per image")
        ax.set_ylim(bottom=0)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", fontsize=8)
    return fig
