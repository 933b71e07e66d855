#!/usr/bin/python3
"""ann_hnswlib.py — the hnswlib side of `quire bench ann`, for comparison only
(not a dependency of Quire). Reads the same files and prints one JSON object
shaped like `quire bench ann --json`.

  /usr/bin/python3 bench/ann_hnswlib.py --base train-images-idx3-ubyte.gz \
      --queries t10k-images-idx3-ubyte.gz --gt G.ivecs [--M 16] \
      [--ef-construction 200] [--ef 16,32,64,128] [-k 10] [-t 2] \
      [--filter-labels train-labels-idx1-ubyte.gz --filter qmod10 [--overfetch 100]]

Build uses -t threads; queries run single-threaded (num_threads=1, one batch
call per ef, so no per-query Python overhead). Filtered search uses hnswlib's
filter functor when the installed hnswlib has one (>= 0.7: one knn_query per
query, the functor is a Python callable); the Debian 12 package (0.6.x) has
none, so the script then post-filters: it asks for --overfetch neighbours
with ef = max(ef, overfetch) and keeps the first k allowed ones.
"""
import argparse, gzip, inspect, json, struct, sys, time

import numpy as np
import hnswlib


def read_any(path):
    op = gzip.open if path.endswith(".gz") else open
    with op(path, "rb") as f:
        return f.read()


def load_vecs(path, dtype):
    b = read_any(path)
    if b[:3] == b"\0\0\x08":  # IDX
        nd = b[3]
        dims = struct.unpack(">" + "I" * nd, b[4:4 + 4 * nd])
        a = np.frombuffer(b, dtype=np.uint8, offset=4 + 4 * nd)
        return a.reshape(dims[0], -1).astype(np.float32)
    d = struct.unpack("<i", b[:4])[0]
    a = np.frombuffer(b, dtype=np.int32).reshape(-1, d + 1)[:, 1:]
    return a.view(dtype) if dtype == np.float32 else a.copy()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--queries", required=True)
    ap.add_argument("--gt", required=True)
    ap.add_argument("--metric", default="l2", choices=["l2", "ip", "cos"])
    ap.add_argument("--M", type=int, default=16)
    ap.add_argument("--ef-construction", type=int, default=200)
    ap.add_argument("--ef", default="16,32,64,128")
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("-t", type=int, default=2)
    ap.add_argument("--nq", type=int, default=-1)
    ap.add_argument("--filter-labels")
    ap.add_argument("--filter")
    ap.add_argument("--overfetch", type=int, default=100)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()

    B = np.ascontiguousarray(load_vecs(a.base, np.float32))
    Q = np.ascontiguousarray(load_vecs(a.queries, np.float32))
    G = load_vecs(a.gt, np.int32)
    nq = min(len(Q), len(G)) if a.nq < 0 else min(a.nq, len(Q), len(G))
    Q = Q[:nq]
    k = a.k
    space = {"l2": "l2", "ip": "ip", "cos": "cosine"}[a.metric]
    idx = hnswlib.Index(space=space, dim=B.shape[1])
    idx.init_index(max_elements=len(B), M=a.M, ef_construction=a.ef_construction, random_seed=100)
    idx.set_num_threads(a.t)
    t0 = time.perf_counter()
    idx.add_items(B, np.arange(len(B)))
    build_s = time.perf_counter() - t0

    labels = None
    has_filter = "filter" in (idx.knn_query.__doc__ or "")
    if a.filter_labels:
        lb = read_any(a.filter_labels)
        labels = np.frombuffer(lb, dtype=np.uint8, offset=8)
    runs = []
    for ef in [int(x) for x in a.ef.split(",")]:
        hits = 0
        if labels is None:
            idx.set_ef(max(ef, k))
            t1 = time.perf_counter()
            res, _ = idx.knn_query(Q, k=k, num_threads=1)
            dt = time.perf_counter() - t1
            for i in range(nq):
                hits += len(set(res[i].tolist()) & set(G[i, :k].tolist()))
            mode = "unfiltered"
        elif has_filter:
            idx.set_ef(max(ef, k))
            t1 = time.perf_counter()
            for i in range(nq):
                want = i % 10
                res, _ = idx.knn_query(Q[i:i + 1], k=k, num_threads=1,
                                       filter=lambda x, w=want: labels[x] == w)
                hits += len(set(res[0].tolist()) & set(G[i, :k].tolist()))
            dt = time.perf_counter() - t1
            mode = "filter-functor"
        else:
            kk = max(k, a.overfetch)
            idx.set_ef(max(ef, kk))
            t1 = time.perf_counter()
            res, _ = idx.knn_query(Q, k=kk, num_threads=1)
            want = (np.arange(nq) % 10)[:, None]
            ok = labels[res] == want
            for i in range(nq):
                got = res[i][ok[i]][:k]
                hits += len(set(got.tolist()) & set(G[i, :k].tolist()))
            dt = time.perf_counter() - t1
            mode = "postfilter-overfetch-%d" % kk
        runs.append({"ef": ef, "recall@%d" % k: hits / (nq * k), "queries_per_s": nq / dt, "mode": mode})
        print(json.dumps(runs[-1]), file=sys.stderr)
    print(json.dumps({"build_s": build_s, "n_base": len(B), "n_queries": nq, "M": a.M,
                      "ef_construction": a.ef_construction, "build_threads": a.t,
                      "query_threads": 1, "hnswlib": getattr(hnswlib, "__version__", "0.6.x"),
                      "runs": runs}))


if __name__ == "__main__":
    main()
