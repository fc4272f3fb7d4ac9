"""Flags on simulated clinic networks: ``python benchmarks/network_flags.py --seeds 20``.

For each seed, :func:`mfr_analysis.simulate.write_network` writes a messy network log (20
sites, 80 clinicians, 4,000 clients by default), the pandas engine cleans it and the pain
change is benchmarked by site and by clinician (the report's defaults). Prints, per seed,
whether the planted better and worse clinicians are flagged (95 % limits, risk-adjusted),
whether the case-mix site is flagged unadjusted and adjusted, and how many average units are
flagged; then the false-flag rate of average units over all seeds against the nominal 5 %
with its binomial 95 % interval. Average units: every clinician but the planted two; every
site but the case-mix site and the sites of the planted clinicians (their mean is truly
shifted by them). Pooled ("other") units are not flagged and not counted. Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from statsmodels.stats.proportion import proportion_confint

from mfr_analysis.benchmarking import benchmark, fit_risk
from mfr_analysis.pipeline import load_sessions, run_clean
from mfr_analysis.pseudonymise import load_key
from mfr_analysis.simulate import pseudonymise_truth, write_network


def one_seed(seed: int, clients: int, sites: int, clinicians: int, folder: Path) -> dict:
    """Simulate, clean and benchmark one network; the flags of its planted and average units."""
    paths = write_network(folder / f"network-{seed}.csv", clients, sites, clinicians, seed)
    run_clean([paths["log"]], folder / f"clean-{seed}", progress=False)
    sessions = load_sessions([folder / f"clean-{seed}" / "sessions.parquet"])
    truth = pseudonymise_truth(json.loads(Path(paths["truth_json"]).read_text()), load_key())
    fit = fit_risk(sessions, "pain")
    by_site = benchmark(sessions, "site", "pain", fit=fit).units.set_index("unit")
    by_clinician = benchmark(sessions, "clinician", "pain", fit=fit).units.set_index("unit")
    planted = {truth["better_clinician"]: "above", truth["worse_clinician"]: "below"}
    shifted_sites = {unit["site"] for unit in truth["units"]["clinician"]
                     if unit["clinician"] in planted}
    case_mix = truth["case_mix_site"]
    named_sites = by_site.loc[~by_site["pooled"]]
    named_clinicians = by_clinician.loc[~by_clinician["pooled"]]
    average_sites = named_sites.drop(index=[case_mix, *shifted_sites], errors="ignore")
    average_clinicians = named_clinicians.drop(index=list(planted), errors="ignore")
    return {
        "seed": seed,
        "better": by_clinician["flag_adjusted"].get(truth["better_clinician"], "pooled"),
        "worse": by_clinician["flag_adjusted"].get(truth["worse_clinician"], "pooled"),
        "case_mix_unadjusted": by_site["flag_unadjusted"].get(case_mix, "pooled"),
        "case_mix_adjusted": by_site["flag_adjusted"].get(case_mix, "pooled"),
        "average_units": len(average_sites) + len(average_clinicians),
        "average_flagged": int((average_sites["flag_adjusted"] != "within").sum()
                               + (average_clinicians["flag_adjusted"] != "within").sum()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--clients", type=int, default=4000)
    parser.add_argument("--sites", type=int, default=20)
    parser.add_argument("--clinicians", type=int, default=80)
    args = parser.parse_args()
    os.environ.setdefault("MFR_PSEUDONYM_KEY", os.urandom(32).hex())
    flagged = units = 0
    ok = 0
    print("seed  better  worse  case-mix(unadj/adj)  average flagged")
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            start = time.perf_counter()
            row = one_seed(seed, args.clients, args.sites, args.clinicians, Path(tmp))
            flagged += row["average_flagged"]
            units += row["average_units"]
            good = (row["better"] == "above" and row["worse"] == "below"
                    and row["case_mix_unadjusted"] != "within"
                    and row["case_mix_adjusted"] == "within")
            ok += good
            print(f"{seed:>4}  {row['better']:>6}  {row['worse']:>5}  "
                  f"{row['case_mix_unadjusted']:>8}/{row['case_mix_adjusted']:<8}  "
                  f"{row['average_flagged']:>3} of {row['average_units']}"
                  f"  {'ok' if good else 'MISSED'}  ({time.perf_counter() - start:.0f} s)",
                  flush=True)
    low, high = proportion_confint(flagged, units, alpha=0.05, method="wilson")
    print(f"planted units right in {ok} of {args.seeds} seeds")
    print(f"false flags of average units: {flagged} of {units} = {flagged / units:.1%} "
          f"(95 % CI {low:.1%} to {high:.1%}; nominal 5.0 %)")


if __name__ == "__main__":
    main()
