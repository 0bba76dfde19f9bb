#!/usr/bin/env python3
"""Table of `make bench` (bench/run.sh): reads the JSON lines of the peers and
of bench_itrc, prints one row per workload with itrc's numbers, the best peer
and the ratio itrc / best peer as a speed (>1: itrc is faster), and writes
everything to a JSON file. Standard library only."""
import argparse
import datetime
import json
import os
import platform
import sys

ORDER = ["vsepp_train_step", "scan_t2i_train_step", "vseinf_train_step", "tern_train_step", "scan_t2i_score", "scan_i2t_score", "sgr_score", "saf_score",
         "bfan_score", "vsepp_encode_image", "vsepp_encode_text", "sgemm_1024", "sgemm_4608x1024x2048",
         "jit_load_vsepp_train_cold",
         "jit_load_vsepp_train_cached", "jit_load_scan_t2i_score_cold", "jit_load_scan_t2i_score_cached",
         "jit_load_tern_train_cold", "jit_load_tern_train_cached", "jit_load_zoo_max_cold",
         "jit_load_zoo_max_cached"]


def speed(rec):
    """Larger is faster, whatever the unit; None for a run stopped at its limit."""
    if rec.get("value") is None:
        return None
    return rec["value"] if rec["better"] == "higher" else 1.0 / rec["value"]


def fmt(v, unit):
    if v is None:
        return "—"
    if unit in ("s", "s/step"):
        return f"{v:.3g} s" if v >= 0.01 else f"{v * 1e3:.3g} ms"
    if v >= 1e3:
        return f"{v / 1e3:.3g} K"
    return f"{v:.3g}"


def cell(rec, unit):
    if rec is None:
        return "—"
    if rec.get("value") is None:
        return f"stopped > {rec.get('timeout_s', '?'):.0f} s"
    return fmt(rec["value"], unit)


def ratio(itrc, best):
    if itrc is None or best is None:
        return "—"
    if itrc.get("value") is None:
        return "—"
    r = speed(itrc) / speed(best)
    return f"{r:.3g}×"


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("records")
    p.add_argument("out")
    p.add_argument("--peer-env", default="")
    p.add_argument("--versions", default="")
    p.add_argument("--load", default="")
    a = p.parse_args()
    recs = []
    with open(a.records) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                try:
                    recs.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
    versions = {}
    if a.versions and os.path.exists(a.versions):
        try:
            with open(a.versions) as f:
                versions = json.load(f)
        except (OSError, json.JSONDecodeError):
            pass
    workloads = sorted({r["workload"] for r in recs}, key=lambda w: (ORDER.index(w) if w in ORDER else 99, w))
    rows = []
    for w in workloads:
        rs = [r for r in recs if r["workload"] == w]
        peers = [r for r in rs if not r["peer"].startswith("itrc-") and r.get("value") is not None]
        best = max(peers, key=speed) if peers else None
        llvm = next((r for r in rs if r["peer"] == "itrc-llvm"), None)
        ref = next((r for r in rs if r["peer"] == "itrc-ref"), None)
        unit = rs[0]["unit"]
        rows.append({"workload": w, "unit": unit, "better": rs[0]["better"],
                     "itrc_llvm": llvm["value"] if llvm else None, "itrc_ref": ref["value"] if ref else None,
                     "best_peer": best["peer"] if best else None, "best_peer_value": best["value"] if best else None,
                     "llvm_vs_best": speed(llvm) / speed(best) if llvm and best and speed(llvm) else None,
                     "ref_vs_best": speed(ref) / speed(best) if ref and best and speed(ref) else None,
                     "peers": {r["peer"]: r["value"] for r in peers}})
    # the table
    hdr = ["workload", "unit", "itrc-llvm", "itrc-ref", "best peer", "its value", "llvm/best", "ref/best"]
    lines = []
    for row in rows:
        llvm = next((r for r in recs if r["workload"] == row["workload"] and r["peer"] == "itrc-llvm"), None)
        ref = next((r for r in recs if r["workload"] == row["workload"] and r["peer"] == "itrc-ref"), None)
        best = ({"value": row["best_peer_value"], "better": row["better"]} if row["best_peer"] else None)
        lines.append([row["workload"], row["unit"], cell(llvm, row["unit"]),
                      cell(ref, row["unit"]), row["best_peer"] or "—",
                      fmt(row["best_peer_value"], row["unit"]), ratio(llvm, best), ratio(ref, best)])
    widths = [max(len(str(x)) for x in col) for col in zip(hdr, *lines)] if lines else [len(h) for h in hdr]
    print()
    print("  ".join(h.ljust(wd) for h, wd in zip(hdr, widths)))
    print("  ".join("-" * wd for wd in widths))
    for ln in lines:
        print("  ".join(str(x).ljust(wd) for x, wd in zip(ln, widths)))
    for r in recs:   # which plan the zoo-wide JIT maxima come from
        if r["workload"].startswith("jit_load_zoo") and r.get("note"):
            print(f"{r['workload']}: {r['note']}")
    print()
    print("ratio = itrc's speed / the best peer's speed (above 1: itrc is faster); every peer's number is in "
          f"{a.out}.")
    meta = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "cpu": cpu_name(),
            "cores": os.cpu_count(), "threads": int(os.environ.get("BENCH_THREADS", "2")),
            "loadavg_at_end": a.load, "peer_env": a.peer_env, "versions": versions}
    print(f"machine: {meta['cpu']}, {meta['cores']} cores; peers: {a.peer_env} {json.dumps(versions)}; "
          f"load average at the end: {a.load}")
    # temp + rename: a run stopped half-way leaves the previous results whole
    tmp = f"{a.out}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump({"meta": meta, "table": rows, "records": recs}, f, indent=1)
        f.write("\n")
    os.replace(tmp, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
