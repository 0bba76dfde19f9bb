"""PyTorch-exported ONNX fixtures of tests/test_onnx_models.c (docs/onnx.md).

A VSE++ image encoder (mean over regions, linear, l2norm) and a GRU text
encoder (embedding, GRU, the state at the last valid token, l2norm) with
lengths as an input and no pack_padded_sequence, exported with dynamic
batch and caption-length dims at opset 17, with PyTorch's outputs on fixed
inputs as the expected values (also checked against ONNX Runtime here).

Run with the bench environment, which has torch and onnxruntime:

    bench/.venv/bin/python tests/gen_onnx_fixtures.py

Writes tests/fixtures/onnx/{vsepp_image,vsepp_text}.onnx and
{vsepp_image,vsepp_text}_{inputs,expected}.npz-free .npy files.
"""
import os

import numpy as np
import torch
import torch.nn as nn

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "onnx")
F, D, R, V, W = 16, 8, 4, 20, 6


def l2norm(x):
    return x / x.pow(2).sum(dim=-1, keepdim=True).sqrt()


class ImageEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(F, D)

    def forward(self, regions):
        return l2norm(self.fc(regions.mean(dim=1)))


class TextEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(V, W)
        self.rnn = nn.GRU(W, D, batch_first=True)

    def forward(self, words, lengths):
        out, _ = self.rnn(self.embed(words))
        # The output at the last valid step, selected by a one-hot mask over
        # the caption axis (no pack_padded_sequence, no advanced indexing).
        steps = torch.arange(words.shape[1], device=words.device).unsqueeze(0)
        pick = (steps == (lengths - 1).unsqueeze(1)).to(out.dtype).unsqueeze(2)
        return l2norm((out * pick).sum(dim=1))


def export(model, args, names, dynamic, path):
    torch.onnx.export(model, args, path, input_names=names, output_names=["emb"], dynamic_axes=dynamic,
                      opset_version=17, dynamo=False)


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(7)
    img, txt = ImageEncoder().eval(), TextEncoder().eval()

    regions = torch.randn(3, R, F)
    export(img, (regions,), ["regions"], {"regions": {0: "N"}, "emb": {0: "N"}},
           os.path.join(OUT, "vsepp_image.onnx"))
    words = torch.randint(0, V, (4, 5))
    lengths = torch.tensor([5, 3, 1, 4])
    export(txt, (words, lengths), ["words", "lengths"],
           {"words": {0: "B", 1: "L"}, "lengths": {0: "B"}, "emb": {0: "B"}}, os.path.join(OUT, "vsepp_text.onnx"))

    # Expected values on other sizes than the export's, so that the dynamic
    # dims are exercised: 2 images, 3 captions of up to 6 words.
    regions2 = torch.randn(2, R, F)
    words2 = torch.randint(0, V, (3, 6))
    lengths2 = torch.tensor([2, 6, 4])
    with torch.no_grad():
        e_img = img(regions2).numpy()
        e_txt = txt(words2, lengths2).numpy()
    np.save(os.path.join(OUT, "regions.npy"), regions2.numpy().astype(np.float32))
    np.save(os.path.join(OUT, "words.npy"), words2.numpy().astype(np.int64))
    np.save(os.path.join(OUT, "lengths.npy"), lengths2.numpy().astype(np.int64))
    np.save(os.path.join(OUT, "image_emb.npy"), e_img.astype(np.float32))
    np.save(os.path.join(OUT, "text_emb.npy"), e_txt.astype(np.float32))

    try:
        import onnxruntime as ort
        s = ort.InferenceSession(os.path.join(OUT, "vsepp_image.onnx"))
        assert np.allclose(s.run(None, {"regions": regions2.numpy()})[0], e_img, atol=1e-5)
        s = ort.InferenceSession(os.path.join(OUT, "vsepp_text.onnx"))
        got = s.run(None, {"words": words2.numpy(), "lengths": lengths2.numpy()})[0]
        assert np.allclose(got, e_txt, atol=1e-5)
        print("onnxruntime agrees with PyTorch")
    except ImportError:
        pass


if __name__ == "__main__":
    main()
