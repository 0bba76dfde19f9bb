#!/usr/bin/env python3
"""Writes tests/fixtures/ckpt/: small checkpoints in the original
repositories' layouts, the weights they hold in itrc's names, and inputs.

    bench/.venv/bin/python tests/gen_checkpoints.py      (needs torch, numpy)

For each zoo model the original's modules are rebuilt here with the original
attribute names (nn.Linear, nn.GRU with _reverse, weight_norm, BatchNorm1d,
nn.TransformerEncoderLayer, Sequential indices) at test sizes, filled with
random values (BatchNorm statistics included), and saved with torch.save in
the original's container ({'model': [img_sd, txt_sd, ...], 'opt': Namespace,
...}). Next to it, NAME.ref.safetensors holds the same weights under itrc's
parameter names, written by the explicit per-model tables below (independent
of models/*.ckpt-map, which is what tests/cli/convert.sh checks): scoring with
the converted checkpoint must agree with scoring with these.

Variants covered: zip and legacy (_use_new_zipfile_serialization=False)
files; weight_norm(dim=None) (SCAN) and parametrizations.weight_norm(dim=0)
(BFAN, as a newer PyTorch saves it); DataParallel's 'module.' prefix (VSE∞);
unused tensors that must be reported (BatchNorm num_batches_tracked, VSE∞'s
mlp.bns.1, TERN's BERT and img_enc.fc). And bad inputs: a missing tensor, a
wrong shape, a text file, pickles naming a forbidden global.
"""

import argparse
import collections
import json
import os
import struct
import zipfile

import numpy as np
import torch
import torch.nn as nn

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures', 'ckpt')

# test sizes, shared with tests/cli/convert.sh
D, W, V, IMG, R = 8, 6, 12, 10, 4
SIM = 4                       # SGRAF sim_dim
GPO_PE, GPO_H = 4, 4          # VSE∞ GPO sizes
T_DIMG, T_HEADS, T_FF, T_LAYERS, T_SHARED, T_TOK = 8, 2, 16, 2, 2, 6


def fill(module, gen):
    """Random values in every parameter and buffer (BatchNorm variances > 0)."""
    with torch.no_grad():
        for name, t in list(module.named_parameters()) + list(module.named_buffers()):
            if t.dtype != torch.float32:
                continue
            if name.endswith('running_var'):
                t.copy_(torch.rand(t.shape, generator=gen) + 0.5)
            else:
                t.copy_(torch.randn(t.shape, generator=gen) * 0.5)
    return module


def opt_namespace(**kw):
    return argparse.Namespace(**kw)


# ---------------------------------------------------------------- itrc names (independent tables)

def lin(ours, m):
    d = {ours + '.weight': m.weight}
    if m.bias is not None:
        d[ours + '.bias'] = m.bias
    return d


def bn(ours, m):
    return {ours + '.weight': m.weight, ours + '.bias': m.bias, ours + '.running_mean': m.running_mean,
            ours + '.running_var': m.running_var}


def gru(ours, m, bidirectional):
    d = {}
    dirs = [('.fwd', ''), ('.bwd', '_reverse')] if bidirectional else [('', '')]
    for our_dir, suf in dirs:
        d[ours + our_dir + '.w_ih'] = getattr(m, 'weight_ih_l0' + suf)
        d[ours + our_dir + '.w_hh'] = getattr(m, 'weight_hh_l0' + suf)
        d[ours + our_dir + '.b_ih'] = getattr(m, 'bias_ih_l0' + suf)
        d[ours + our_dir + '.b_hh'] = getattr(m, 'bias_hh_l0' + suf)
    return d


def tel(ours, m):
    d = {ours + '.self_attn.in_proj_weight': m.self_attn.in_proj_weight,
         ours + '.self_attn.in_proj_bias': m.self_attn.in_proj_bias}
    d.update(lin(ours + '.self_attn.out_proj', m.self_attn.out_proj))
    for sub in ('linear1', 'linear2', 'norm1', 'norm2'):
        d.update(lin(ours + '.' + sub, getattr(m, sub)))
    return d


def folded(g, v, dim):
    """torch.nn.utils.weight_norm's w = g v / ||v|| (dim None: whole tensor)."""
    if dim is None:
        return g * v / v.norm()
    return g * v / v.norm(dim=1, keepdim=True)


# ---------------------------------------------------------------- originals' modules

class ImgPrecomp(nn.Module):          # SCAN / VSEPP / SGRAF EncoderImagePrecomp
    def __init__(self, wn=None):
        super().__init__()
        self.fc = nn.Linear(IMG, D)
        if wn == 'old':
            self.fc = torch.nn.utils.weight_norm(self.fc, dim=None)
        elif wn == 'new':
            self.fc = torch.nn.utils.parametrizations.weight_norm(self.fc, dim=0)


class Text(nn.Module):                # EncoderText
    def __init__(self, rnn_name='rnn', bidirectional=True, vocab=V):
        super().__init__()
        self.embed = nn.Embedding(vocab, W)
        setattr(self, rnn_name, nn.GRU(W, D, 1, batch_first=True, bidirectional=bidirectional))


class VisualSA(nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding_local = nn.Sequential(nn.Linear(D, D), nn.BatchNorm1d(R), nn.Tanh(), nn.Dropout(0.4))
        self.embedding_global = nn.Sequential(nn.Linear(D, D), nn.BatchNorm1d(D), nn.Tanh(), nn.Dropout(0.4))
        self.embedding_common = nn.Sequential(nn.Linear(D, 1))


class TextSA(nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding_local = nn.Sequential(nn.Linear(D, D), nn.Tanh(), nn.Dropout(0.4))
        self.embedding_global = nn.Sequential(nn.Linear(D, D), nn.Tanh(), nn.Dropout(0.4))
        self.embedding_common = nn.Sequential(nn.Linear(D, 1))


class GraphReasoning(nn.Module):
    def __init__(self):
        super().__init__()
        self.graph_query_w = nn.Linear(SIM, SIM)
        self.graph_key_w = nn.Linear(SIM, SIM)
        self.sim_graph_w = nn.Linear(SIM, SIM)


class AttentionFiltration(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn_sim_w = nn.Linear(SIM, 1)
        self.bn = nn.BatchNorm1d(1)


class EncoderSimilarity(nn.Module):
    def __init__(self, module_name, sgr_step):
        super().__init__()
        self.v_global_w = VisualSA()
        self.t_global_w = TextSA()
        self.sim_tranloc_w = nn.Linear(D, SIM)
        self.sim_tranglo_w = nn.Linear(D, SIM)
        self.sim_eval_w = nn.Linear(SIM, 1)
        if module_name == 'SGR':
            self.SGR_module = nn.ModuleList([GraphReasoning() for _ in range(sgr_step)])
        else:
            self.SAF_module = AttentionFiltration()


class GPO(nn.Module):
    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(GPO_PE, GPO_H, 1, batch_first=True, bidirectional=True)
        self.linear = nn.Linear(GPO_H, 1, bias=False)


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(IMG, D // 2), nn.Linear(D // 2, D)])
        self.bns = nn.ModuleList([nn.BatchNorm1d(D // 2), nn.BatchNorm1d(D)])


class VseInfImg(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(IMG, D)
        self.mlp = MLP()
        self.gpool = GPO()


class VseInfTxt(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(V, W)
        self.rnn = nn.GRU(W, D, 1, batch_first=True, bidirectional=True)
        self.gpool = GPO()


def tel_layer(d):
    return nn.TransformerEncoderLayer(d_model=d, nhead=T_HEADS, dim_feedforward=T_FF, dropout=0.1)


class Gated(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.gate_fn = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, 1))
        self.node_fn = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, d))


class FakeBert(nn.Module):            # stands for the BERT tower: only its names matter
    def __init__(self):
        super().__init__()
        self.bert_model = nn.Module()
        self.bert_model.embeddings = nn.Module()
        self.bert_model.embeddings.word_embeddings = nn.Embedding(20, T_TOK)
        self.bert_model.encoder = nn.Module()
        self.bert_model.encoder.layer = nn.ModuleList([nn.Linear(T_TOK, T_TOK) for _ in range(3)])


class TernImg(nn.Module):
    def __init__(self):
        super().__init__()
        self.transformer_encoder = nn.TransformerEncoder(tel_layer(T_DIMG), num_layers=T_LAYERS,
                                                         enable_nested_tensor=False)
        self.fc = nn.Linear(T_DIMG, D)   # TERN's discarded mean-pooled projection


class TernJoint(nn.Module):
    def __init__(self):
        super().__init__()
        self.txt_enc = FakeBert()
        self.img_enc = TernImg()
        self.img_proj = nn.Linear(T_DIMG, D)
        self.cap_proj = nn.Linear(T_TOK, D)
        self.transformer_encoder_1 = nn.TransformerEncoder(tel_layer(D), num_layers=T_SHARED,
                                                           enable_nested_tensor=False)
        self.text_aggregation = Gated(D)
        self.image_aggregation = Gated(D)


class TERN(nn.Module):
    def __init__(self):
        super().__init__()
        self.img_txt_enc = TernJoint()


# ---------------------------------------------------------------- writers

def write_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        a = tensors[name].detach().cpu().contiguous().numpy().astype(np.float32)
        raw = a.tobytes()
        header[name] = {'dtype': 'F32', 'shape': list(a.shape), 'data_offsets': [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    h += b' ' * ((8 - len(h) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h)) + h + b''.join(blobs))


def save(name, ckpt, ref, legacy=False):
    torch.save(ckpt, os.path.join(OUT, name + '.pth'), _use_new_zipfile_serialization=not legacy)
    write_safetensors(os.path.join(OUT, name + '.ref.safetensors'), ref)


def scan_like(name, wn, gen, legacy=False):
    img, txt = fill(ImgPrecomp(wn), gen), fill(Text(), gen)
    ref = {'embed.weight': txt.embed.weight}
    ref.update(gru('rnn', txt.rnn, True))
    if wn == 'old':
        ref['img_fc.weight'] = folded(img.fc.weight_g, img.fc.weight_v, None)
    elif wn == 'new':
        p = img.fc.parametrizations.weight
        ref['img_fc.weight'] = folded(p.original0, p.original1, 0)
    else:
        ref['img_fc.weight'] = img.fc.weight
    ref['img_fc.bias'] = img.fc.bias
    ckpt = {'model': [img.state_dict(), txt.state_dict()], 'epoch': 7, 'best_rsum': np.float64(412.5), 'Eiters': 1000,
            'opt': opt_namespace(embed_size=D, word_dim=W, lambda_softmax=9.0, precomp_enc_type=wn or 'basic')}
    save(name, ckpt, ref, legacy)
    return img, txt


def main():
    os.makedirs(OUT, exist_ok=True)
    gen = torch.Generator().manual_seed(12)

    # VSE++: one-directional GRU
    img_vsepp, txt_vsepp = img, txt = fill(ImgPrecomp(), gen), fill(Text(bidirectional=False), gen)
    ref = dict(lin('img_fc', img.fc))
    ref['embed.weight'] = txt.embed.weight
    ref.update(gru('rnn', txt.rnn, False))
    vsepp = {'model': [img.state_dict(), txt.state_dict()], 'opt': opt_namespace(embed_size=D, max_violation=True),
             'epoch': 3, 'best_rsum': np.float64(300.25), 'Eiters': 40}
    save('vsepp', vsepp, ref)

    # bad inputs, from the VSE++ checkpoint
    bad = {'model': [dict(vsepp['model'][0]), collections.OrderedDict(vsepp['model'][1])]}
    del bad['model'][1]['rnn.bias_hh_l0']
    torch.save(bad, os.path.join(OUT, 'vsepp_missing.pth'))
    bad = {'model': [dict(vsepp['model'][0]), vsepp['model'][1]]}
    bad['model'][0]['fc.weight'] = torch.zeros(D, IMG + 1)
    torch.save(bad, os.path.join(OUT, 'vsepp_badshape.pth'))

    # inputs
    rng = np.random.default_rng(5)
    regions = rng.standard_normal((3, R, IMG)).astype(np.float32)
    words = rng.integers(0, V, size=(4, 5)).astype(np.int32)
    lengths = np.array([5, 3, 2, 4], dtype=np.int32)
    np.save(os.path.join(OUT, 'regions.npy'), regions)
    np.save(os.path.join(OUT, 'regions_tern.npy'), rng.standard_normal((3, R, T_DIMG)).astype(np.float32))
    np.save(os.path.join(OUT, 'words.npy'), words)
    np.save(os.path.join(OUT, 'lengths.npy'), lengths)
    np.save(os.path.join(OUT, 'token_feats.npy'), rng.standard_normal((4, 5, T_TOK)).astype(np.float32))

    # What the originals' own forward passes compute on these inputs, so that
    # the maps' conventions (GRU directions, weight_norm) are checked against
    # PyTorch itself and not only against the tables above.
    x, w, n = torch.from_numpy(regions), torch.from_numpy(words).long(), torch.from_numpy(lengths).long()
    with torch.no_grad():
        v = img_vsepp.fc(x.mean(dim=1))
        v = v / v.norm(dim=1, keepdim=True)
        packed = nn.utils.rnn.pack_padded_sequence(txt_vsepp.embed(w), n, batch_first=True, enforce_sorted=False)
        _, h = txt_vsepp.rnn(packed)
        u = h[0] / h[0].norm(dim=1, keepdim=True)
        np.save(os.path.join(OUT, 'vsepp.torch.sims.npy'), (v @ u.t()).numpy())
    for name, wn, legacy in (('scan_t2i', None, False), ('scan_i2t', 'old', True), ('bfan', 'new', False)):
        # scan_i2t: weight_norm(dim=None) in a legacy-format file; bfan:
        # parametrizations.weight_norm(dim=0), as a newer PyTorch saves it
        img, txt = scan_like(name, wn, gen, legacy)
        with torch.no_grad():
            f = img.fc(x)
            np.save(os.path.join(OUT, name + '.torch.img_regions.npy'), (f / (f.norm(dim=-1, keepdim=True) + 1e-8)).numpy())
            packed = nn.utils.rnn.pack_padded_sequence(txt.embed(w), n, batch_first=True, enforce_sorted=False)
            out, _ = txt.rnn(packed)
            out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=w.shape[1])
            hh = (out[:, :, :D] + out[:, :, D:]) / 2
            np.save(os.path.join(OUT, name + '.torch.cap_words.npy'),
                    (hh / (hh.norm(dim=-1, keepdim=True) + 1e-8)).numpy())

    # SGRAF: SGR with 2 steps, SAF
    for module_name, name in (('SGR', 'sgr'), ('SAF', 'saf')):
        img, txt = fill(ImgPrecomp(), gen), fill(Text(rnn_name='cap_rnn'), gen)
        sim = fill(EncoderSimilarity(module_name, 2), gen)
        ref = dict(lin('img_fc', img.fc))
        ref['embed.weight'] = txt.embed.weight
        ref.update(gru('cap_rnn', txt.cap_rnn, True))
        v, t = sim.v_global_w, sim.t_global_w
        ref.update(lin('v_global_w.local_fc', v.embedding_local[0]))
        ref.update(bn('v_global_w.local_bn', v.embedding_local[1]))
        ref.update(lin('v_global_w.global_fc', v.embedding_global[0]))
        ref.update(bn('v_global_w.global_bn', v.embedding_global[1]))
        ref.update(lin('v_global_w.common', v.embedding_common[0]))
        ref.update(lin('t_global_w.local_fc', t.embedding_local[0]))
        ref.update(lin('t_global_w.global_fc', t.embedding_global[0]))
        ref.update(lin('t_global_w.common', t.embedding_common[0]))
        for sub in ('sim_tranloc_w', 'sim_tranglo_w', 'sim_eval_w'):
            ref.update(lin('sim_enc.' + sub, getattr(sim, sub)))
        if module_name == 'SGR':
            for k, g in enumerate(sim.SGR_module):
                for sub in ('graph_query_w', 'graph_key_w', 'sim_graph_w'):
                    ref.update(lin('sgr%d.%s' % (k, sub), getattr(g, sub)))
        else:
            ref.update(lin('saf_module.attn_sim_w', sim.SAF_module.attn_sim_w))
            ref.update(bn('saf_module.bn', sim.SAF_module.bn))
        ckpt = {'model': [img.state_dict(), txt.state_dict(), sim.state_dict()], 'epoch': 1, 'best_rsum': 100.0,
                'opt': opt_namespace(module_name=module_name, sgr_step=2, sim_dim=SIM)}
        save(name, ckpt, ref)

    # VSE∞ (bigru branch), saved under DataParallel
    img, txt = fill(VseInfImg(), gen), fill(VseInfTxt(), gen)
    ref = dict(lin('img_fc', img.fc))
    ref.update(lin('img_mlp1', img.mlp.layers[0]))
    ref.update(bn('img_bn', img.mlp.bns[0]))
    ref.update(lin('img_mlp2', img.mlp.layers[1]))
    ref.update(gru('img_gpo.rnn', img.gpool.gru, True))
    ref['img_gpo.linear.weight'] = img.gpool.linear.weight
    ref['embed.weight'] = txt.embed.weight
    ref.update(gru('txt_rnn', txt.rnn, True))
    ref.update(gru('txt_gpo.rnn', txt.gpool.gru, True))
    ref['txt_gpo.linear.weight'] = txt.gpool.linear.weight

    def dp(sd):
        return collections.OrderedDict(('module.' + k, v) for k, v in sd.items())
    save('vse_inf', {'model': [dp(img.state_dict()), dp(txt.state_dict())], 'opt': opt_namespace(), 'epoch': 2}, ref)

    # TERN, gated aggregation; the checkpoint also carries optimizer state
    tern = fill(TERN(), gen)
    j = tern.img_txt_enc
    ref = {}
    for k, layer in enumerate(j.img_enc.transformer_encoder.layers):
        ref.update(tel('img_layer%d' % k, layer))
    for k, layer in enumerate(j.transformer_encoder_1.layers):
        ref.update(tel('shared%d' % k, layer))
    ref.update(lin('img_proj', j.img_proj))
    ref.update(lin('cap_proj', j.cap_proj))
    for ours, agg in (('img_agg', j.image_aggregation), ('cap_agg', j.text_aggregation)):
        ref.update(lin(ours + '.gate_fn.fc1', agg.gate_fn[0]))
        ref.update(lin(ours + '.gate_fn.fc2', agg.gate_fn[2]))
        ref.update(lin(ours + '.node_fn.fc1', agg.node_fn[0]))
        ref.update(lin(ours + '.node_fn.fc2', agg.node_fn[2]))
    optim = torch.optim.Adam(tern.parameters())
    save('tern', {'model': tern.state_dict(), 'config': {'model': {'embed-size': D}}, 'optimizer': optim.state_dict(),
                  'epoch': 5}, ref)

    # not checkpoints
    with open(os.path.join(OUT, 'not_a_checkpoint.pth'), 'w') as f:
        f.write('these are not the weights you are looking for\n')
    # Pickles that would call os.mkdir('itr_convert_pwned') if a reader ran
    # them: a bare legacy-style stream and the same as a zip's data.pkl.
    # Hand-assembled protocol-2 opcodes, so nothing here runs them either.
    evil = b'\x80\x02cos\nmkdir\nX\x11\x00\x00\x00itr_convert_pwned\x85R.'
    with open(os.path.join(OUT, 'evil.pth'), 'wb') as f:
        f.write(evil)
    with zipfile.ZipFile(os.path.join(OUT, 'evil_zip.pth'), 'w') as z:
        z.writestr('evil_zip/data.pkl', evil)
        z.writestr('evil_zip/version', '3\n')
        z.writestr('evil_zip/byteorder', 'little')


if __name__ == '__main__':
    main()
