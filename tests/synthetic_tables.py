"""Small hand-made tables in the schemas the measurement functions produce (for the plot and report tests)."""

import math

import pandas as pd


def token_scores(source: str = "logit_lens", groups=((6, "sum"), (6, "pos 1 ' wedding'")), k: int = 3) -> pd.DataFrame:
    """k promoted and k suppressed tokens per (layer, readout) group; scores k..1 and -1..-k."""
    rows = []
    for layer, readout in groups:
        for rank in range(1, k + 1):
            rows.append({"source": source, "layer": layer, "hook": f"blocks.{layer}.hook_resid_pre",
                         "readout": readout, "direction": "promoted", "rank": rank, "token": f" up{rank}",
                         "token_id": 100 + rank, "score": float(k + 1 - rank),
                         "coeff": math.nan if source == "logit_lens" else 4.0})
            rows.append({"source": source, "layer": layer, "hook": f"blocks.{layer}.hook_resid_pre",
                         "readout": readout, "direction": "suppressed", "rank": rank, "token": f"down{rank}\n",
                         "token_id": 200 + rank, "score": -float(k + 1 - rank),
                         "coeff": math.nan if source == "logit_lens" else 4.0})
    return pd.DataFrame(rows)


def lens_ranks() -> pd.DataFrame:
    """Two targets over four layers; ' wedding' becomes readable (rank ≤ 10) at layer 2."""
    rows = []
    for target, ranks in ((" wedding", [5000, 300, 8, 1]), (" love", [20000, 9000, 700, 50])):
        for layer, rank in enumerate(ranks):
            rows.append({"layer": layer, "hook": f"blocks.{layer}.hook_resid_post", "readout": "sum",
                         "target": target, "rank": rank, "score": 10.0 / rank,
                         "top_tokens": f"'a{layer}', 'b{layer}', 'c{layer}', 'd{layer}', 'e{layer}'"})
    return pd.DataFrame(rows)


# effect of "sentiment" and steered mean of "kl" per (layer, coeff); coeff 10 sorts after 2 numerically only
EFFECT = {(2, 0.0): 0.0, (2, 2.0): 0.5, (2, 10.0): 1.6, (4, -4.0): -0.7, (4, 0.0): 0.0, (4, 2.0): 0.9,
          (4, 10.0): 1.2}
KL = {(2, 0.0): 0.0, (2, 2.0): 0.05, (2, 10.0): 0.8, (4, -4.0): 0.2, (4, 0.0): 0.0, (4, 2.0): 0.1,
      (4, 10.0): 0.9}


def effects() -> pd.DataFrame:
    """A sweep's effects table: metrics "sentiment" (first) and "kl"; layer 2 has no coeff -4 cell."""
    rows = []
    for metric, values in (("sentiment", EFFECT), ("kl", KL)):
        for (layer, coeff), value in values.items():
            rows.append({"layer": layer, "coeff": coeff, "metric": metric, "n": 16,
                         "mean_steered": value if metric == "kl" else 0.1 + value / 10,
                         "mean_unsteered": 0.0 if metric == "kl" else 0.1,
                         "effect": value if metric == "sentiment" else 2 * value,
                         "ci_low": value - 0.3, "ci_high": value + 0.3})
    return pd.DataFrame(rows)


def norm_layers() -> pd.DataFrame:
    """Two vector positions over three layers."""
    rows = []
    for position, token in ((0, "<bos>"), (1, " Love")):
        for layer in range(3):
            vector_norm = (position + 1) * (layer + 1.0)
            resid_norm = 10.0 * (layer + 1) if position else 300.0
            rows.append({"layer": layer, "hook": f"blocks.{layer}.hook_resid_pre", "position": position,
                         "vector_token": token, "vector_norm": vector_norm, "resid_norm": resid_norm,
                         "ratio": vector_norm / resid_norm})
    return pd.DataFrame(rows)


def token_view(n_rows: int = 3) -> pd.DataFrame:
    """n_rows completions of lengths 3, 2, 3, 2, …; delta = row + position / 10 (negative for odd rows)."""
    rows = []
    for row in range(n_rows):
        condition = "steered" if row % 2 == 0 else "unsteered"
        for position in range(3 if row % 2 == 0 else 2):
            sign = 1 if row % 2 == 0 else -1
            rows.append({"row": row, "condition": condition, "label": f"{condition} c=4 #{row}",
                         "position": position, "token": f" t{row}{position}", "delta": sign * (row + position / 10)})
    return pd.DataFrame(rows)


def norm_profile() -> pd.DataFrame:
    """The table st.norm_profile returns, for norm_figure."""
    rows = []
    for position, token in enumerate(["<bos>", "I", " hate"]):
        for series, norm in (("steering (c·v)", 4.0), ("residual", 40.0 if position == 0 else 8.0)):
            rows.append({"position": position, "token": token, "vector_token": token, "series": series,
                         "norm": norm, "ratio": 4.0 / (40.0 if position == 0 else 8.0),
                         "hook": "blocks.6.hook_resid_pre", "coeff": 4.0})
    return pd.DataFrame(rows)
