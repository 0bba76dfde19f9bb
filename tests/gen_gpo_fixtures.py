#!/usr/bin/python3
"""PyTorch reference for VSE∞ / GPO (tests/test_model_vse_inf.c).

Regenerate with Debian's interpreter (python3-torch, numpy); the fixtures are
committed:

    /usr/bin/python3 tests/gen_gpo_fixtures.py            # writes tests/fixtures/gpo/
    /usr/bin/python3 tests/gen_gpo_fixtures.py OUT_DIR

An independent transcription of VSEINF's lib/modules/aggr/gpo.py,
lib/encoders.py (EncoderImageAggr 'basic', EncoderText of the bigru branch and
the master branch's Linear head on token features) and lib/modules/mlp.py,
built from nn.GRU over pack_padded_sequence, never from itrc code. Sizes
(models/vse_inf.ir with -D D=16 -D W=8 -D V=30 -D img_dim=24 -D tok_dim=12
-D R=5; GPO at its original 32/32):

  gpo.*                 one GPO alone: x f32[2, 6, 16], lengths [6, 3],
                        its parameters, pooled f32[2, 16], weights f32[2, 6]
  P.npy                 every model parameter P, named as itrc names it
  regions f32[3, 5, 24], words i32[4, 7], lengths i32[4] (mixed, unsorted),
  token_feats f32[4, 7, 12]
  img_emb, cap_emb, sims            eval mode (BatchNorm running statistics)
  feats_cap_emb, feats_sims         the same with the token-feature text head
  train_regions f32[4, 5, 24]       a batch of 4 matched pairs with words
                                    and lengths: training-mode BatchNorm
  train_loss_sum, train_loss_max    the two hinge forms (margin 0.2, summed)
  grad_sum.P, grad_max.P            their gradients
  new.img_bn.running_mean / _var    the running statistics after that step
"""
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from fixturegen import hinge

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "fixtures", "gpo")

D, W, V, IMG, TOK, R = 16, 8, 30, 24, 12, 5
N_IMG, B, L = 3, 4, 7
LENGTHS = [5, 7, 1, 3]


def positional_encoding_1d(d_model, length):
    pe = torch.zeros(length, d_model)
    position = torch.arange(0, length).unsqueeze(1)
    div_term = torch.exp((torch.arange(0, d_model, 2, dtype=torch.float) * -(math.log(10000.0) / d_model)))
    pe[:, 0::2] = torch.sin(position.float() * div_term)
    pe[:, 1::2] = torch.cos(position.float() * div_term)
    return pe


class GPO(nn.Module):
    def __init__(self, d_pe, d_hidden):
        super().__init__()
        self.d_pe = d_pe
        self.d_hidden = d_hidden
        self.gru = nn.GRU(d_pe, d_hidden, 1, batch_first=True, bidirectional=True)
        self.linear = nn.Linear(d_hidden, 1, bias=False)

    def compute_pool_weights(self, lengths, features):
        max_len = int(lengths.max())
        pes = positional_encoding_1d(self.d_pe, max_len).unsqueeze(0).repeat(lengths.size(0), 1, 1)
        mask = torch.arange(max_len).expand(lengths.size(0), max_len)
        mask = (mask < lengths.long().unsqueeze(1)).unsqueeze(-1)
        pes = pes.masked_fill(mask == 0, 0)
        packed = pack_padded_sequence(pes, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.gru(packed)
        out_emb, _ = pad_packed_sequence(out, batch_first=True)
        out_emb = (out_emb[:, :, :out_emb.size(2) // 2] + out_emb[:, :, out_emb.size(2) // 2:]) / 2
        scores = self.linear(out_emb)
        scores[torch.where(mask == 0)] = -10000
        weights = torch.softmax(scores / 0.1, 1)
        return weights, mask

    def forward(self, features, lengths):
        pool_weights, mask = self.compute_pool_weights(lengths, features)
        features = features[:, :int(lengths.max()), :]
        sorted_features = features.masked_fill(mask == 0, -10000)
        sorted_features = sorted_features.sort(dim=1, descending=True)[0]
        sorted_features = sorted_features.masked_fill(mask == 0, 0)
        return (sorted_features * pool_weights).sum(1), pool_weights


def l2norm(x, dim=-1, eps=1e-8):
    return torch.div(x, torch.pow(x, 2).sum(dim=dim, keepdim=True).sqrt() + eps)


class MLP(nn.Module):
    def __init__(self, input_dim, hidden_dim, output_dim, num_layers):
        super().__init__()
        self.output_dim = output_dim
        self.num_layers = num_layers
        h = [hidden_dim] * (num_layers - 1)
        self.layers = nn.ModuleList(nn.Linear(n, k) for n, k in zip([input_dim] + h, h + [output_dim]))
        self.bns = nn.ModuleList(nn.BatchNorm1d(k) for k in h + [output_dim])

    def forward(self, x):
        b, n, d = x.size()
        x = x.reshape(b * n, d)
        for i, (bn, layer) in enumerate(zip(self.bns, self.layers)):
            x = torch.relu(bn(layer(x))) if i < self.num_layers - 1 else layer(x)
        return x.view(b, n, self.output_dim)


class EncoderImageAggr(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(IMG, D)
        self.mlp = MLP(IMG, D // 2, D, 2)
        self.gpool = GPO(32, 32)

    def forward(self, images, image_lengths):
        features = self.mlp(images) + self.fc(images)
        features, _ = self.gpool(features, image_lengths)
        return l2norm(features, dim=-1)


class EncoderTextGRU(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(V, W)
        self.rnn = nn.GRU(W, D, 1, batch_first=True, bidirectional=True)
        self.gpool = GPO(32, 32)

    def forward(self, x, lengths):
        packed = pack_padded_sequence(self.embed(x), lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.rnn(packed)
        cap_emb, cap_len = pad_packed_sequence(out, batch_first=True)
        cap_emb = (cap_emb[:, :, :cap_emb.size(2) // 2] + cap_emb[:, :, cap_emb.size(2) // 2:]) / 2
        pooled, _ = self.gpool(cap_emb, cap_len)
        return l2norm(pooled, dim=-1)


class EncoderTextFeats(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(TOK, D)
        self.gpool = GPO(32, 32)

    def forward(self, feats, lengths):
        pooled, _ = self.gpool(self.linear(feats), lengths)
        return l2norm(pooled, dim=-1)


def gpo_names(prefix, g):
    out = {}
    for tn, it in (("weight_ih_l0", "w_ih"), ("weight_hh_l0", "w_hh"), ("bias_ih_l0", "b_ih"), ("bias_hh_l0", "b_hh")):
        out[getattr(g.gru, tn)] = prefix + "rnn.fwd." + it
        out[getattr(g.gru, tn + "_reverse")] = prefix + "rnn.bwd." + it
    out[g.linear.weight] = prefix + "linear.weight"
    return out


def save(name, t):
    a = t.detach().numpy() if isinstance(t, torch.Tensor) else t
    if a.dtype == np.float64:
        a = a.astype(np.float32)
    np.save(os.path.join(OUT, name + ".npy"), a)


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(7)

    # GPO alone: the weights depend only on n, so two lengths.
    g = GPO(32, 32)
    x = torch.randn(2, 6, 16)
    lens = torch.tensor([6, 3])
    pooled, weights = g(x, lens)
    for p, n in gpo_names("gpo.", g).items():
        save(n, p)
    save("gpo.x", x)
    save("gpo.lengths", lens.int().numpy())
    save("gpo.pooled", pooled)
    save("gpo.weights", weights.squeeze(2))

    img = EncoderImageAggr()
    txt = EncoderTextGRU()
    tf = EncoderTextFeats()
    bn = img.mlp.bns[0]
    with torch.no_grad():
        # Non-trivial values everywhere: biases and BatchNorm state are zero
        # or one at initialisation, which would hide a wrong broadcast.
        for m in (img, txt, tf):
            for p in m.parameters():
                if p.dim() == 1:
                    p.uniform_(-0.3, 0.3)
        bn.weight.uniform_(0.5, 1.5)
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    names = {img.fc.weight: "img_fc.weight", img.fc.bias: "img_fc.bias",
             img.mlp.layers[0].weight: "img_mlp1.weight", img.mlp.layers[0].bias: "img_mlp1.bias",
             bn.weight: "img_bn.weight", bn.bias: "img_bn.bias",
             img.mlp.layers[1].weight: "img_mlp2.weight", img.mlp.layers[1].bias: "img_mlp2.bias",
             txt.embed.weight: "embed.weight"}
    for tn, it in (("weight_ih_l0", "w_ih"), ("weight_hh_l0", "w_hh"), ("bias_ih_l0", "b_ih"), ("bias_hh_l0", "b_hh")):
        names[getattr(txt.rnn, tn)] = "txt_rnn.fwd." + it
        names[getattr(txt.rnn, tn + "_reverse")] = "txt_rnn.bwd." + it
    names.update(gpo_names("img_gpo.", img.gpool))
    names.update(gpo_names("txt_gpo.", txt.gpool))
    fnames = {tf.linear.weight: "txt_fc.weight", tf.linear.bias: "txt_fc.bias"}
    fnames.update(gpo_names("feats_txt_gpo.", tf.gpool))
    for p, n in list(names.items()) + list(fnames.items()):
        save(n, p)
    save("img_bn.running_mean", bn.running_mean)
    save("img_bn.running_var", bn.running_var)

    regions = torch.randn(N_IMG, R, IMG)
    lengths = torch.tensor(LENGTHS)
    words = torch.zeros(B, L, dtype=torch.long)
    for b, n in enumerate(LENGTHS):
        words[b, :n] = torch.randint(1, V, (n,))
    token_feats = torch.randn(B, L, TOK)
    for b, n in enumerate(LENGTHS):
        token_feats[b, n:] = 0.0
    save("regions", regions)
    save("words", words.int().numpy())
    save("lengths", lengths.int().numpy())
    save("token_feats", token_feats)

    img.eval()
    txt.eval()
    tf.eval()
    with torch.no_grad():
        v = img(regions, torch.full((N_IMG,), R))
        u = txt(words, lengths)
        uf = tf(token_feats, lengths)
    save("img_emb", v)
    save("cap_emb", u)
    save("sims", v @ u.t())
    save("feats_cap_emb", uf)
    save("feats_sims", v @ uf.t())

    # Training mode: B matched pairs, BatchNorm on the batch's B·R rows.
    train_regions = torch.randn(B, R, IMG)
    save("train_regions", train_regions)
    state = {k: t.clone() for k, t in bn.state_dict().items()}
    for form, mv in (("sum", False), ("max", True)):
        bn.load_state_dict(state)
        img.train()
        txt.train()
        for p in names:
            p.grad = None
        s = img(train_regions, torch.full((B,), R)) @ txt(words, lengths).t()
        loss = hinge(s, 0.2, mv)
        loss.backward()
        save("train_loss_" + form, loss.reshape(()))
        print(f"train loss ({form}): {loss.item():.6f}")
        for p, n in names.items():
            g_ = p.grad if p.grad is not None else torch.zeros_like(p)
            save(f"grad_{form}.{n}", g_)
    save("new.img_bn.running_mean", bn.running_mean)
    save("new.img_bn.running_var", bn.running_var)
    print("gpo weights:", weights.squeeze(2).detach().numpy())
    print("sims:", (v @ u.t()).numpy())


if __name__ == "__main__":
    main()
