#!/usr/bin/python3
"""PyTorch reference for catalogue B (tests/test_catalogue_b.c): the
interactions of models/modules/interaction.ir, the wrappers of
models/modules/wrappers.ir and the losses added to models/modules/losses.ir,
each written here from the equations of models.md (§2.2 SCAN, §2.9 the
collection's interactions and wrappers, §3.4 KTERN's pytorch-metric-learning
losses, §3.5 CMPL, the angular loss and the rest of BENCH's collection:
PolyLoss, NPairLoss, MmdRbfLoss, DiversityLoss), never derived from itrc
code.

Regenerate with Debian's interpreter (python3-torch, numpy); the fixtures are
committed, so this is only needed when a module changes:

    /usr/bin/python3 tests/gen_catalogue_b_fixtures.py        # tests/fixtures/catalogue_b/
    /usr/bin/python3 tests/gen_catalogue_b_fixtures.py OUT_DIR

The interactions are computed one (image, caption) pair at a time on the
caption truncated to its valid words, as the originals do, so the batched
masking of the IR is checked rather than copied. The PML losses loop over
the ordered pairs / triplets of the 2B set. Entries and names follow
tests/ir/catalogue_b_harness.ir: parameter P in P.npy (float32), input X of
entry E in E.in.X.npy (float32 / int32), output Y in E.out.Y.npy (computed
in float64 from the float32 values, stored as float64).

Sizes: 2 images of 3 regions, 3 captions of lengths 4, 2, 3 (L = 4) whose
padded word rows hold random values (which must not matter), D = 6, CAMP's
d_attn 4, RCR's d_attn 4 with MLP hidden sizes 8 and 5; the losses on
K = 4 pairs.
"""
import math
import os
import sys

import numpy as np
import torch

from fixturegen import fresh_dir

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "fixtures", "catalogue_b")

N_IMG, R, D = 2, 3, 6
LENGTHS = [4, 2, 3]
L = max(LENGTHS)
K = 4
D_CAMP = 4
RCR = dict(d_attn=4, hm=8, hs=5)

# The smallest |F| over every BFAN keep decision (F > 0 keeps an item).
closest = [float("inf")]

P = {}  # itrc parameter name -> float64 tensor (from float32 values)
gen = torch.Generator().manual_seed(13)


def param(name, shape, kind="normal"):
    if kind == "var":
        t = torch.rand(shape, generator=gen, dtype=torch.float64) + 0.5
    else:
        t = torch.randn(shape, generator=gen, dtype=torch.float64) * 0.5
    t = t.float().double()
    P[name] = t
    return t


def linear_params(prefix, n_in, n_out):
    param(prefix + ".weight", (n_out, n_in))
    param(prefix + ".bias", (n_out,))


def lin(prefix, x):
    return x @ P[prefix + ".weight"].t() + P[prefix + ".bias"]


def l2n(x, dim=-1, eps=1e-8):
    return x / (x.pow(2).sum(dim=dim, keepdim=True).sqrt() + eps)


def cos(a, b, eps=1e-8):
    """SCAN's cosine_similarity along the last axis."""
    return (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1)).clamp(min=eps)


# ------------------------------------------------------------ interactions
# q (n_q, D) queries, c (n_c, D) context of ONE pair; each returns (q', a).

def scan_alpha(q, c, lam):
    """SCAN steps 1-3: (n_c, n_q) weights, softmax over the context."""
    a = c @ q.t()
    a = torch.nn.functional.leaky_relu(a, 0.1)
    a = a / (a.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-8)     # across the queries
    if not torch.is_tensor(lam):
        lam = torch.tensor(lam, dtype=torch.float64)
    return torch.softmax(a * lam, dim=0)


def scan(q, c, lam=9.0):
    return q, scan_alpha(q, c, lam).t() @ c


def bfan(q, c, lam=20.0, focal="equal"):
    alpha = scan_alpha(q, c, lam)          # (n_c, n_q)
    n = alpha.size(0)
    if focal == "equal":
        f = alpha * n - alpha.sum(0, keepdim=True)
    else:
        g = alpha.sqrt()
        f = torch.stack([((alpha[i:i + 1] - alpha) * g).sum(0) for i in range(n)])
    closest[0] = min(closest[0], f.abs().min().item())
    h = (f > 0).double()
    ha = h * alpha
    return q, (ha / ha.sum(0, keepdim=True)).t() @ c


def camp(pre, q, c, mode):
    logits = lin(pre + ".w_q", q) @ lin(pre + ".w_k", c).t() / math.sqrt(D_CAMP)
    a = torch.softmax(logits, dim=1) @ c
    if mode == "new":
        a = l2n(torch.softmax(a @ a.t() / math.sqrt(D), dim=1) @ a)
    g = torch.sigmoid((q * a).sum(1, keepdim=True))
    qa = torch.cat([q, a], 1) * g
    return l2n(torch.relu(lin(pre + ".w_o", qa)) + q), a


def adapt(pre, q, c, pool, lam=10.0):
    ch = (c - P[pre + ".running_mean"]) / torch.sqrt(P[pre + ".running_var"] + 1e-5)
    gamma = lin(pre + ".fc_gamma", q)
    beta = lin(pre + ".fc_beta", q)
    cp = ch.unsqueeze(0) * (1 + gamma.unsqueeze(1)) + beta.unsqueeze(1)   # (n_q, n_c, D)
    m = torch.softmax(lam * cp, dim=1)
    a = (m * cp).mean(1) if pool == "mean" else (m * cp).max(1)[0]
    return q, a


def imram(pre, q, c, steps=2, lam=9.0):
    qk = q
    for _ in range(steps):
        a = scan(qk, c, lam)[1]
        x = torch.cat([qk, a], 1)
        g = torch.sigmoid(lin(pre + ".gate", x))
        qk = l2n(qk * g + torch.tanh(lin(pre + ".fuse", x)) * (1 - g))
    return q, scan(qk, c, lam)[1]


def mlp(pre, x):
    return lin(pre + ".fc2", torch.relu(lin(pre + ".fc1", x)))


def rcr(pre, q, c, steps=2, lam0=10.0):
    m = torch.ones(D, dtype=torch.float64)
    lam = torch.full((q.size(0),), lam0, dtype=torch.float64)
    for _ in range(steps):
        a = scan_alpha(q * m, c, lam).t() @ c
        h = l2n(lin(pre + ".w_c", (l2n(q) - l2n(a)) ** 2))
        m = torch.clamp(torch.tanh(mlp(pre + ".mlp_m", h)) + m, -1, 1)
        lam = torch.relu(mlp(pre + ".mlp_s", h).squeeze(1) + lam)
    return q, scan_alpha(q * m, c, lam).t() @ c


def san(pre, q, c):
    h = torch.sigmoid(lin(pre + ".w_q", q).unsqueeze(1) + lin(pre + ".w_c", c).unsqueeze(0))
    h = torch.tanh(lin(pre + ".w_1", h)) * torch.tanh(lin(pre + ".w_2", c)).unsqueeze(0)
    logits = lin(pre + ".w_a", h).squeeze(2)          # (n_q, n_c)
    return q, torch.softmax(logits, dim=1) @ c


# ------------------------------------------------------------ losses

def cmpl(s, lam=10.0, eps=1e-8):
    q = torch.eye(s.size(0), dtype=torch.float64)
    total = 0
    for x in (s, s.t()):
        p = torch.softmax(lam * x, dim=1)
        total = total + (p * torch.log(eps + p / (q + eps))).sum(1).mean()
    return total


def bce(s, eps=1e-6, max_violation=False):
    """BENCH BCELoss, quirks included (1/B² on the negatives; the max variant
    counts the positive term twice)."""
    b = s.size(0)
    c = s.clamp(eps, 1 - eps)
    eye = torch.eye(b, dtype=torch.bool)
    lp = torch.log(c.diag())
    ln = torch.log(1 - c)
    if max_violation:
        big = torch.where(eye, torch.zeros_like(ln), ln)
        return -(2 * lp.sum() + big.min(1)[0].sum() + big.min(0)[0].sum())
    return -(lp.mean() + ln[~eye].sum() / (b * b))


def infonce(s, tau):
    a = s / tau
    target = torch.arange(s.size(0))
    ce = torch.nn.functional.cross_entropy
    return 0.5 * ce(a, target) + 0.5 * ce(a.t(), target)


def angular(v, u, tan2=1.0, max_violation=False):
    b = v.size(0)
    terms_f, terms_g = [], []
    for i in range(b):
        f = [4 * tan2 * ((v[i] + u[i]) @ u[j]) - 2 * (1 + tan2) * (v[i] @ u[i]) for j in range(b) if j != i]
        g = [4 * tan2 * ((u[i] + v[i]) @ v[j]) - 2 * (1 + tan2) * (v[i] @ u[i]) for j in range(b) if j != i]
        terms_f.append(torch.stack(f))
        terms_g.append(torch.stack(g))
    if max_violation:
        return sum(torch.log1p(torch.exp(t.max())) for t in terms_f + terms_g)
    lf = torch.stack([torch.log1p(torch.exp(t).sum()) for t in terms_f]).mean()
    lg = torch.stack([torch.log1p(torch.exp(t).sum()) for t in terms_g]).mean()
    return lf + lg


def pml_set(txt, img):
    e = torch.cat([txt, img], 0)
    e = e / e.norm(dim=1, keepdim=True).clamp(min=1e-12)
    labels = list(range(txt.size(0))) * 2
    return e, labels


def pml_contrastive(txt, img, pos_margin=0.0, neg_margin=1.0):
    e, lab = pml_set(txt, img)
    pos, neg = [], []
    for a in range(len(lab)):
        for b in range(len(lab)):
            if a == b:
                continue
            d = (e[a] - e[b]).norm()
            if lab[a] == lab[b]:
                pos.append(torch.relu(d - pos_margin))
            else:
                neg.append(torch.relu(neg_margin - d))

    def avg_nonzero(xs):
        xs = torch.stack(xs)
        n = (xs > 0).sum()
        return xs.sum() / n if n > 0 else xs.sum() * 0

    return avg_nonzero(pos) + avg_nonzero(neg)


def ntxent(txt, img, tau=0.07):
    e, lab = pml_set(txt, img)
    s = e @ e.t() / tau
    losses = []
    for a in range(len(lab)):
        for p in range(len(lab)):
            if p == a or lab[p] != lab[a]:
                continue
            negs = torch.stack([s[a, n] for n in range(len(lab)) if lab[n] != lab[a]])
            losses.append(-torch.log(torch.exp(s[a, p]) / (torch.exp(s[a, p]) + torch.exp(negs).sum())))
    return torch.stack(losses).mean()


def pml_triplet(txt, img, margin):
    e, lab = pml_set(txt, img)
    ls = []
    for a in range(len(lab)):
        for p in range(len(lab)):
            if p == a or lab[p] != lab[a]:
                continue
            for n in range(len(lab)):
                if lab[n] == lab[a]:
                    continue
                ls.append(torch.relu((e[a] - e[p]).norm() - (e[a] - e[n]).norm() + margin))
    ls = torch.stack(ls)
    n = (ls > 0).sum()
    return ls.sum() / n if n > 0 else ls.sum() * 0


def poly(s, margin=0.0, eps=1e-5):
    """BENCH PolyLoss: a row (then a column) counts only when its positive is
    below 1 - eps and it has a negative with S_ij + m > p; L = sum / B."""
    b = s.size(0)
    total = torch.zeros((), dtype=torch.float64)
    for x in (s, s.t()):
        for i in range(b):
            p = x[i, i]
            if p >= 1 - eps:
                continue
            hard = [x[i, j] for j in range(b) if j != i and x[i, j] + margin > p]
            if not hard:
                continue
            n = torch.stack(hard).max()
            total = total + torch.relu(0.2 * p * p - 0.7 * p + 0.5) + torch.relu(0.9 * n * n - 0.4 * n + 0.03)
    return total / b


def npair(s, max_violation=False):
    """The intended n-pair loss over the off-diagonal entries (not BENCH's
    whole-row indexing); the max form without an exponential, as written."""
    b = s.size(0)
    rows = [torch.stack([s[i, j] - s[i, i] for j in range(b) if j != i]) for i in range(b)]
    cols = [torch.stack([s[j, i] - s[i, i] for j in range(b) if j != i]) for i in range(b)]
    if max_violation:
        return sum(torch.log(1 + t.max()) for t in rows + cols)
    return (torch.stack([torch.log(1 + torch.exp(t).sum()) for t in rows]).mean()
            + torch.stack([torch.log(1 + torch.exp(t).sum()) for t in cols]).mean())


def mmd_rbf(x, y, gamma=0.5):
    def k(a, c):
        return torch.stack([torch.stack([torch.exp(-gamma * (a[i] - c[j]).norm()) for j in range(c.size(0))])
                            for i in range(a.size(0))])
    return (k(x, x) - 2 * k(x, y) + k(y, y)).mean()


def diversity(e):
    h = e.size(1)
    vals = []
    for eb in e:
        g = eb @ eb.t()
        off = g - torch.diag(torch.diag(g))
        vals.append(off.pow(2).sum().sqrt() / h ** 2)
    return torch.stack(vals).mean()


# ------------------------------------------------------------ driver

def save(name, a):
    np.save(os.path.join(OUT, name + ".npy"), a)


def pair_entry(name, fn, direction, img, cap):
    """Runs fn(q, c) -> (q', a) on every (image, caption) pair and saves q', a
    [N, B, n_q, D] (zero at padded query slots) and the mean cosine s [N, B]."""
    n_q = L if direction == "t2i" else R
    q2s = torch.zeros(N_IMG, len(LENGTHS), n_q, D, dtype=torch.float64)
    atts = torch.zeros_like(q2s)
    s = torch.zeros(N_IMG, len(LENGTHS), dtype=torch.float64)
    for i in range(N_IMG):
        for k, n in enumerate(LENGTHS):
            words, regions = cap[k, :n], img[i]
            q, c = (words, regions) if direction == "t2i" else (regions, words)
            q2, a = fn(q, c)
            q2s[i, k, :q.size(0)] = q2
            atts[i, k, :q.size(0)] = a
            s[i, k] = cos(q2, a).mean()
    save(name + ".out.q2", q2s.numpy())
    save(name + ".out.a", atts.numpy())
    save(name + ".out.s", s.numpy())


def main():
    fresh_dir(OUT)
    img32 = torch.randn(N_IMG, R, D, generator=gen).float()
    cap32 = torch.randn(len(LENGTHS), L, D, generator=gen).float()
    lengths = np.array(LENGTHS, dtype=np.int32)

    for pre in ("camp_raw", "camp_new", "l2l_i2t.inter.camp"):
        linear_params(pre + ".w_q", D, D_CAMP)
        linear_params(pre + ".w_k", D, D_CAMP)
        linear_params(pre + ".w_o", 2 * D, D)
    for pre in ("adapt_mean", "adapt_max"):
        linear_params(pre + ".fc_gamma", D, D)
        linear_params(pre + ".fc_beta", D, D)
        param(pre + ".running_mean", (D,))
        param(pre + ".running_var", (D,), kind="var")
    linear_params("imram.gate", 2 * D, D)
    linear_params("imram.fuse", 2 * D, D)
    linear_params("rcr.w_c", D, RCR["d_attn"])
    linear_params("rcr.mlp_m.fc1", RCR["d_attn"], RCR["hm"])
    linear_params("rcr.mlp_m.fc2", RCR["hm"], D)
    linear_params("rcr.mlp_s.fc1", RCR["d_attn"], RCR["hs"])
    linear_params("rcr.mlp_s.fc2", RCR["hs"], 1)
    for pre in ("san", "g2l_i2t.inter.san"):
        for w in ("w_q", "w_c", "w_1", "w_2"):
            linear_params(pre + "." + w, D, D)
        linear_params(pre + ".w_a", D, 1)
    for name, t in P.items():
        save(name, t.numpy().astype(np.float32))

    pair_names = ["scan_t2i", "scan_i2t", "bfan_equal_i2t", "bfan_prob_t2i", "camp_raw_t2i", "camp_new_i2t",
                  "camp_new_t2i", "adapt_mean_t2i", "adapt_max_i2t", "imram_t2i", "imram_i2t", "rcr_t2i",
                  "rcr_i2t", "san_t2i", "san_i2t", "l2l_t2i", "l2l_i2t", "g2l_t2i", "g2l_i2t", "g2g"]
    for name in pair_names:
        save("run_%s.in.img" % name, img32.numpy())
        save("run_%s.in.cap" % name, cap32.numpy())
        save("run_%s.in.lengths" % name, lengths)

    img = l2n(img32.double())
    cap = l2n(cap32.double())     # only the valid rows are ever read
    pair_entry("run_scan_t2i", lambda q, c: scan(q, c, 9.0), "t2i", img, cap)
    pair_entry("run_scan_i2t", lambda q, c: scan(q, c, 4.0), "i2t", img, cap)
    pair_entry("run_bfan_equal_i2t", lambda q, c: bfan(q, c, 20.0, "equal"), "i2t", img, cap)
    pair_entry("run_bfan_prob_t2i", lambda q, c: bfan(q, c, 20.0, "prob"), "t2i", img, cap)
    pair_entry("run_camp_raw_t2i", lambda q, c: camp("camp_raw", q, c, "raw"), "t2i", img, cap)
    pair_entry("run_camp_new_i2t", lambda q, c: camp("camp_new", q, c, "new"), "i2t", img, cap)
    pair_entry("run_camp_new_t2i", lambda q, c: camp("camp_new", q, c, "new"), "t2i", img, cap)
    pair_entry("run_adapt_mean_t2i", lambda q, c: adapt("adapt_mean", q, c, "mean"), "t2i", img, cap)
    pair_entry("run_adapt_max_i2t", lambda q, c: adapt("adapt_max", q, c, "max"), "i2t", img, cap)
    pair_entry("run_imram_t2i", lambda q, c: imram("imram", q, c), "t2i", img, cap)
    pair_entry("run_imram_i2t", lambda q, c: imram("imram", q, c), "i2t", img, cap)
    pair_entry("run_rcr_t2i", lambda q, c: rcr("rcr", q, c), "t2i", img, cap)
    pair_entry("run_rcr_i2t", lambda q, c: rcr("rcr", q, c), "i2t", img, cap)
    pair_entry("run_san_t2i", lambda q, c: san("san", q, c), "t2i", img, cap)
    pair_entry("run_san_i2t", lambda q, c: san("san", q, c), "i2t", img, cap)

    # Wrappers: the score matrices [N, B].
    s = {k: torch.zeros(N_IMG, len(LENGTHS), dtype=torch.float64) for k in ("l2l_t2i", "l2l_i2t", "g2l_t2i",
                                                                             "g2l_i2t", "g2g")}
    for i in range(N_IMG):
        for k, n in enumerate(LENGTHS):
            words, regions = cap[k, :n], img[i]
            q2, a = scan(words, regions, 9.0)
            s["l2l_t2i"][i, k] = torch.log(torch.exp(6.0 * cos(q2, a)).sum()) / 6.0
            q2, a = camp("l2l_i2t.inter.camp", regions, words, "raw")
            s["l2l_i2t"][i, k] = cos(q2, a).mean()
            g = l2n(words.mean(0, keepdim=True))
            q2, a = scan(g, regions, 9.0)
            s["g2l_t2i"][i, k] = cos(q2, a)[0]
            g = l2n(regions.max(0, keepdim=True)[0])
            q2, a = san("g2l_i2t.inter.san", g, words)
            s["g2l_i2t"][i, k] = cos(q2, a)[0]
            s["g2g"][i, k] = l2n(regions.mean(0)) @ l2n(words.mean(0))
    for k, v in s.items():
        save("run_%s.out.s" % k, v.numpy())

    # Losses on K pairs.
    sm = (torch.rand(K, K, generator=gen) * 2 - 1).float()
    save("run_cmpl.in.s", sm.numpy())
    save("run_cmpl.out.l", cmpl(sm.double()).reshape(()).numpy())
    sb = (torch.rand(K, K, generator=gen) * 0.9 + 0.05).float()
    save("run_bce.in.s", sb.numpy())
    save("run_bce.out.l", bce(sb.double()).reshape(()).numpy())
    save("run_bce.out.lmax", bce(sb.double(), max_violation=True).reshape(()).numpy())
    save("run_infonce.in.s", sm.numpy())
    save("run_infonce.out.l", infonce(sm.double(), 0.1).reshape(()).numpy())
    v32 = torch.randn(K, D, generator=gen).float() * 0.4
    u32 = (v32 * 0.5 + torch.randn(K, D, generator=gen) * 0.4).float()
    save("run_angular.in.v", v32.numpy())
    save("run_angular.in.u", u32.numpy())
    v, u = v32.double(), u32.double()
    save("run_angular.out.l", angular(v, u).reshape(()).numpy())
    save("run_angular.out.lmax", angular(v, u, tan2=0.5, max_violation=True).reshape(()).numpy())
    for name, fn in (("pml_contrastive", pml_contrastive), ("ntxent", ntxent),
                     ("pml_triplet", lambda t, i: pml_triplet(t, i, 0.3))):
        save("run_%s.in.txt" % name, u32.numpy())
        save("run_%s.in.img" % name, v32.numpy())
        val = fn(u, v)
        print(name, "%.9g" % val.item())
        save("run_%s.out.l" % name, val.reshape(()).numpy())

    # The rest of the BENCH collection (§3.5). Drawn after everything above,
    # so that the earlier fixtures do not move.
    sp = (torch.rand(K, K, generator=gen) * 1.6 - 0.8).float()
    sp[0, 0] = 1.0                      # p >= 1 - eps: row and column 0 skipped
    sp[1, 1] = sp[1].max() + 0.05       # row 1: no negative above p (margin 0)
    save("run_poly.in.s", sp.numpy())
    save("run_poly.out.l", poly(sp.double()).reshape(()).numpy())
    save("run_poly.out.lm", poly(sp.double(), margin=0.2).reshape(()).numpy())
    save("run_npair.in.s", sm.numpy())
    save("run_npair.out.l", npair(sm.double()).reshape(()).numpy())
    save("run_npair.out.lmax", npair(0.45 * sm.double(), max_violation=True).reshape(()).numpy())
    x32 = (torch.randn(K, D, generator=gen) * 0.5).float()
    y32 = (x32 * 0.5 + torch.randn(K, D, generator=gen) * 0.5).float()
    y32[2] = x32[1]                     # a zero distance inside K(x, y)
    save("run_mmd_rbf.in.x", x32.numpy())
    save("run_mmd_rbf.in.y", y32.numpy())
    save("run_mmd_rbf.out.l", mmd_rbf(x32.double(), y32.double()).reshape(()).numpy())
    e32 = (torch.randn(K, 3, D, generator=gen) * 0.5).float()
    save("run_diversity.in.e", e32.numpy())
    save("run_diversity.out.l", diversity(e32.double()).reshape(()).numpy())
    for name in ("poly", "npair", "mmd_rbf", "diversity"):
        print(name, "%.9g" % np.load(os.path.join(OUT, "run_%s.out.l.npy" % name)))
    print("closest BFAN keep decision: |F| = %.3g" % closest[0])
    assert closest[0] > 2e-6, "a keep decision is too close to its threshold for float32"


if __name__ == "__main__":
    main()
