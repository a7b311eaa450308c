# The PyTorch side of the training-step benchmark (the same models and batch sizes as dlhist's side, kept
# unchanged between benchmark runs so tables stay comparable); `cargo xtask bench` runs it against dlhist/examples/train_steps.rs.
"""PyTorch reference: median training-step time for the models of the original notebooks.
Run: python torch_steps.py [MODEL_SUBSTRING...]  (prints one JSON line per model).
THREADS (default 2) sets the CPU threads; DEVICE=cuda (default cpu) runs on the GPU, timing each step up to a
synchronize, as dlhist's train_steps does with DLHIST_DEVICE=cuda."""
import json, math, os, sys, time, statistics, torch, torch.nn as nn, torch.nn.functional as F
torch.manual_seed(0)
torch.set_num_threads(int(os.environ.get('THREADS', '2')))
dev = torch.device(os.environ.get('DEVICE', 'cpu'))
only = sys.argv[1:]
# No TF32: dlhist's CUDA matrix products are full f32 (candle's default), so PyTorch's must be too.
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False

# Where this ran, for the benchmark table's header (cargo xtask bench reads the "machine" line).
print(json.dumps({"machine": {"program": "torch", "version": torch.__version__,
                              "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                              "threads": torch.get_num_threads(), "device": str(dev)}}), flush=True)

def sync():
    if dev.type == 'cuda': torch.cuda.synchronize()

def bench(name, model, make_batch, loss_fn, steps=20, warmup=3):
    if only and not any(o in name for o in only): return
    model = model.to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = (t.to(dev) for t in make_batch())
    times = []
    for i in range(warmup + steps):
        sync()
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        sync()
        dt = time.perf_counter() - t
        if i >= warmup: times.append(dt)
    print(json.dumps({"model": name, "median_ms": round(statistics.median(times) * 1e3, 3),
                      "min_ms": round(min(times) * 1e3, 3), "threads": torch.get_num_threads()}))

class CNN(nn.Module):  # the original 03-cnn notebook's model
    def __init__(s):
        super().__init__()
        s.c = nn.Sequential(nn.Conv2d(1, 16, 5, 1, 2), nn.ReLU(), nn.MaxPool2d(2),
                            nn.Conv2d(16, 32, 5, 1, 2), nn.ReLU(), nn.MaxPool2d(2))
        s.o = nn.Linear(32 * 7 * 7, 10)
    def forward(s, x): return s.o(s.c(x).flatten(1))

mlp = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
bench("mlp_784_256_256_10_b100", mlp, lambda: (torch.randn(100, 784), torch.randint(0, 10, (100,))), F.cross_entropy)
bench("cnn_orig_b100", CNN(), lambda: (torch.randn(100, 1, 28, 28), torch.randint(0, 10, (100,))), F.cross_entropy)

class GPT(nn.Module):  # nanoGPT-style char model at nanoGPT's CPU recipe size
    def __init__(s, V=65, T=64, C=128, L=4, H=4):
        super().__init__()
        s.tok = nn.Embedding(V, C); s.pos = nn.Embedding(T, C)
        layer = nn.TransformerEncoderLayer(C, H, 4 * C, dropout=0.0, activation="gelu", batch_first=True, norm_first=True)
        s.blocks = nn.TransformerEncoder(layer, L); s.ln = nn.LayerNorm(C); s.head = nn.Linear(C, V)
        s.register_buffer("mask", torch.triu(torch.full((T, T), float("-inf")), 1))
    def forward(s, idx):
        T = idx.shape[1]
        x = s.tok(idx) + s.pos(torch.arange(T, device=idx.device))
        return s.head(s.ln(s.blocks(x, mask=s.mask[:T, :T], is_causal=True)))
bench("gpt_char_L4_C128_T64_b12", GPT(), lambda: (torch.randint(0, 65, (12, 64)), torch.randint(0, 65, (12, 64))),
      lambda out, y: F.cross_entropy(out.reshape(-1, 65), y.reshape(-1)))

bench("gpt_bpe_L4_C128_T64_b16_V2304", GPT(V=2304), lambda: (torch.randint(0, 2304, (16, 64)), torch.randint(0, 2304, (16, 64))),
      lambda out, y: F.cross_entropy(out.reshape(-1, 2304), y.reshape(-1)))

class LSTMNet(nn.Module):
    def __init__(s): super().__init__(); s.l = nn.LSTM(1, 128, batch_first=True); s.o = nn.Linear(128, 1)
    def forward(s, x): return s.o(s.l(x)[0][:, -1])
bench("lstm_h128_T50_b32", LSTMNet(), lambda: (torch.randn(32, 50, 1), torch.randn(32, 1)), F.mse_loss)

# The LSTM's twins: the same input, sizes, readout (the last step's output) and loss.
class RNNNet(nn.Module):
    def __init__(s): super().__init__(); s.l = nn.RNN(1, 128, nonlinearity="tanh", batch_first=True); s.o = nn.Linear(128, 1)
    def forward(s, x): return s.o(s.l(x)[0][:, -1])
bench("rnn_tanh_h128_T50_b32", RNNNet(), lambda: (torch.randn(32, 50, 1), torch.randn(32, 1)), F.mse_loss)

class GRUNet(nn.Module):
    def __init__(s): super().__init__(); s.l = nn.GRU(1, 128, batch_first=True); s.o = nn.Linear(128, 1)
    def forward(s, x): return s.o(s.l(x)[0][:, -1])
bench("gru_h128_T50_b32", GRUNet(), lambda: (torch.randn(32, 50, 1), torch.randn(32, 1)), F.mse_loss)

# RNNsearch (Bahdanau et al. 2014), dlhist's sequence_modeling::attention::RnnSearch: a bidirectional GRU encoder,
# additive attention e = v·tanh(W s + U h) with U h computed once per batch, a GRU decoder fed [E y; c], s_0 =
# tanh(W_s h<-_1), a linear readout of [s; c; E y]; teacher-forced on 30-word pairs without padding.
class RNNsearch(nn.Module):
    def __init__(s, V_src=63, V_tgt=70, m=32, n=64, a=64):
        super().__init__()
        s.src_emb = nn.Embedding(V_src, m); s.tgt_emb = nn.Embedding(V_tgt, m)
        s.enc = nn.GRU(m, n, batch_first=True, bidirectional=True)
        s.init = nn.Linear(n, n); s.W = nn.Linear(n, a, bias=False); s.U = nn.Linear(2 * n, a, bias=False)
        s.v = nn.Parameter(torch.randn(a) / a ** 0.5)
        s.dec = nn.GRUCell(m + 2 * n, n); s.out = nn.Linear(3 * n + m, V_tgt); s.n = n
    def forward(s, x):
        src, tgt_in = x[:, 0], x[:, 1]
        h, _ = s.enc(s.src_emb(src))                      # [B, S, 2n]
        st = torch.tanh(s.init(h[:, 0, s.n:]))            # s_0 from the backward direction's h<-_1
        keys = s.U(h)                                     # U h_j, once
        emb = s.tgt_emb(tgt_in)
        states, ctxs = [], []
        for i in range(tgt_in.shape[1]):
            e = torch.tanh(keys + s.W(st).unsqueeze(1)) @ s.v          # [B, S]
            alpha = torch.softmax(e, dim=1)
            c = torch.bmm(alpha.unsqueeze(1), h).squeeze(1)            # [B, 2n]
            st = s.dec(torch.cat([emb[:, i], c], 1), st)
            states.append(st); ctxs.append(c)
        return s.out(torch.cat([torch.stack(states, 1), torch.stack(ctxs, 1), emb], 2))
def _rnnsearch_batch(B=32, L=30):
    x = torch.stack([torch.randint(3, 63, (B, L)), torch.cat([torch.ones(B, 1, dtype=torch.long), torch.randint(3, 70, (B, L - 1))], 1)], 1)
    y = torch.cat([x[:, 1, 1:], torch.full((B, 1), 2)], 1)
    return x, y
bench("rnnsearch_h64_S30_T30_b32", RNNsearch(), _rnnsearch_batch, lambda out, y: F.cross_entropy(out.reshape(-1, 70), y.reshape(-1)))

# The Transformer (Vaswani et al. 2017), dlhist's transformers::Transformer at the Transformer notebook's size:
# d_model 64, 4 heads, d_ff 256, 2 encoder and 2 decoder layers, post-LN, ReLU, no dropout, embeddings scaled by
# sqrt(d_model) plus sinusoidal positions, the output layer tied to the target embedding; teacher-forced on the
# same 30-word pairs as RNNsearch, without padding (so no padding mask; the decoder's causal mask only).
class Transformer(nn.Module):
    def __init__(s, V_src=63, V_tgt=70, d=64, h=4, ff=256, L=2):
        super().__init__()
        s.d = d
        s.src_emb = nn.Embedding(V_src, d); s.tgt_emb = nn.Embedding(V_tgt, d)
        nn.init.normal_(s.src_emb.weight, std=d ** -0.5); nn.init.normal_(s.tgt_emb.weight, std=d ** -0.5)
        layer = dict(d_model=d, nhead=h, dim_feedforward=ff, dropout=0.0, batch_first=True, norm_first=False)
        s.enc = nn.ModuleList([nn.TransformerEncoderLayer(**layer) for _ in range(L)])
        s.dec = nn.ModuleList([nn.TransformerDecoderLayer(**layer) for _ in range(L)])
        pos = torch.arange(256).unsqueeze(1) / 10000 ** (torch.arange(0, d, 2) / d)
        pe = torch.zeros(256, d); pe[:, 0::2] = torch.sin(pos); pe[:, 1::2] = torch.cos(pos)
        s.register_buffer("pe", pe)
    def forward(s, x):
        src, tgt_in = x[:, 0], x[:, 1]
        T = tgt_in.shape[1]
        m = s.src_emb(src) * s.d ** 0.5 + s.pe[: src.shape[1]]
        for layer in s.enc: m = layer(m)
        y = s.tgt_emb(tgt_in) * s.d ** 0.5 + s.pe[:T]
        causal = nn.Transformer.generate_square_subsequent_mask(T, device=x.device)
        for layer in s.dec: y = layer(y, m, tgt_mask=causal, tgt_is_causal=True)
        return y @ s.tgt_emb.weight.t()
bench("transformer_d64_S30_T30_b32", Transformer(), _rnnsearch_batch, lambda out, y: F.cross_entropy(out.reshape(-1, 70), y.reshape(-1)))

# BERT's masked LM (Devlin et al. 2018), dlhist's transformers::BertForMaskedLm at the BERT notebook's size:
# vocabulary 4000, 32 tokens, H 128, 4 heads, feed-forward 512, 2 pre-LN layers with GELU and a final norm, token +
# position + segment embeddings with a layer norm, no dropout; the MLM head (dense, GELU, layer norm, the token
# embedding as output matrix) evaluated only at the 5 predicted positions of each sequence, as dlhist does.
class BertMLM(nn.Module):
    def __init__(s, V=4000, T=32, C=128, L=2, H=4, B=32, k=5):
        super().__init__()
        s.tok = nn.Embedding(V, C); s.pos = nn.Embedding(T, C); s.seg = nn.Embedding(2, C)
        s.ln_e = nn.LayerNorm(C, eps=1e-12)
        layer = nn.TransformerEncoderLayer(C, H, 4 * C, dropout=0.0, activation="gelu", batch_first=True,
                                           norm_first=True, layer_norm_eps=1e-12)
        s.blocks = nn.TransformerEncoder(layer, L, enable_nested_tensor=False); s.ln_f = nn.LayerNorm(C, eps=1e-12)
        s.dense = nn.Linear(C, C); s.ln_h = nn.LayerNorm(C, eps=1e-12); s.bias = nn.Parameter(torch.zeros(V))
        # k predicted positions per sequence (never [CLS] at 0), as flat row indices into [B*T].
        rows = torch.cat([b * T + 1 + torch.randperm(T - 1)[:k] for b in range(B)]).sort().values
        s.register_buffer("rows", rows)
    def forward(s, idx):
        T = idx.shape[1]
        x = s.tok(idx) + s.pos(torch.arange(T, device=idx.device)) + s.seg(torch.zeros_like(idx))
        h = s.ln_f(s.blocks(s.ln_e(x)))
        z = s.ln_h(F.gelu(s.dense(h.reshape(-1, h.shape[-1])[s.rows])))
        return z @ s.tok.weight.t() + s.bias
bench("bert_mlm_h128_L2_T32_b32", BertMLM(), lambda: (torch.randint(5, 4000, (32, 32)), torch.randint(5, 4000, (32 * 5,))),
      F.cross_entropy)

# The Vision Transformer (Dosovitskiy et al. 2020), dlhist's transformers::Vit at the ViT notebook's size: 28×28 grey
# images cut into 16 patches of 7×7 (a stride-7 convolution), a class token and learned positions, width 64, 4 pre-LN
# layers of 4 heads with GELU and an MLP of 256, the final layer norm, a linear head on the class token; batch 64.
class ViT(nn.Module):
    def __init__(s, P=7, C=64, L=4, H=4, classes=10):
        super().__init__()
        s.patch = nn.Conv2d(1, C, P, stride=P); n = (28 // P) ** 2
        s.cls = nn.Parameter(torch.zeros(1, 1, C)); s.pos = nn.Parameter(torch.zeros(1, n + 1, C))
        layer = nn.TransformerEncoderLayer(C, H, 4 * C, dropout=0.0, activation="gelu", batch_first=True,
                                           norm_first=True, layer_norm_eps=1e-12)
        s.blocks = nn.TransformerEncoder(layer, L, enable_nested_tensor=False)
        s.ln = nn.LayerNorm(C, eps=1e-12); s.head = nn.Linear(C, classes)
    def forward(s, x):
        z = s.patch(x).flatten(2).transpose(1, 2)
        z = torch.cat([s.cls.expand(z.shape[0], -1, -1), z], 1) + s.pos
        return s.head(s.ln(s.blocks(z)[:, 0]))
bench("vit_p7_d64_L4_b64", ViT(), lambda: (torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,))), F.cross_entropy)

# The DDPM U-Net of the diffusion notebook, dlhist's image_generation::diffusion::UNet with 16 channels: a 3×3
# convolution in, blocks of a 3×3 convolution plus a per-channel shift from the time embedding then ReLU, two max-pools
# down (16, 32, 32 channels), two nearest-neighbour upsamplings up with the skips concatenated, a 3×3 convolution out;
# the sinusoidal embedding of the step through Linear-ReLU-Linear. Fixed random steps, batch 64, squared error.
def timestep_embedding(t, dim):
    half = dim // 2
    a = t[:, None] * torch.exp(-math.log(10000.0) * torch.arange(half) / half)[None]
    return torch.cat([a.sin(), a.cos()], 1)
class TimedConv(nn.Module):
    def __init__(s, ci, co, e): super().__init__(); s.c = nn.Conv2d(ci, co, 3, padding=1); s.t = nn.Linear(e, co)
    def forward(s, x, emb): return F.relu(s.c(x) + s.t(emb)[:, :, None, None])
class UNet(nn.Module):
    def __init__(s, c=16):
        super().__init__(); e = 4 * c; s.ch = c
        s.time1 = nn.Linear(c, e); s.time2 = nn.Linear(e, e); s.inc = nn.Conv2d(1, c, 3, padding=1)
        s.down1 = TimedConv(c, c, e); s.down2 = TimedConv(c, 2 * c, e); s.mid = TimedConv(2 * c, 2 * c, e)
        s.up2 = TimedConv(4 * c, 2 * c, e); s.up1 = TimedConv(3 * c, c, e); s.out = nn.Conv2d(c, 1, 3, padding=1)
        s.register_buffer("t", torch.randint(0, 1000, (64,)).float())
    def forward(s, x):
        emb = s.time2(F.relu(s.time1(timestep_embedding(s.t, s.ch))))
        h1 = s.down1(s.inc(x), emb); h2 = s.down2(F.max_pool2d(h1, 2), emb); m = s.mid(F.max_pool2d(h2, 2), emb)
        u2 = s.up2(torch.cat([F.interpolate(m, size=14, mode="nearest"), h2], 1), emb)
        u1 = s.up1(torch.cat([F.interpolate(u2, size=28, mode="nearest"), h1], 1), emb)
        return s.out(u1)
bench("ddpm_unet_c16_b64", UNet(), lambda: (torch.randn(64, 1, 28, 28), torch.randn(64, 1, 28, 28)), F.mse_loss)

# The VAE of the VAE notebook (Kingma & Welling 2013), dlhist's image_generation::vae::Vae with the paper's 500 tanh
# units and 20 latents: 100 binary images, one reparameterized sample each from a fixed ε, minus the bound as the loss.
class VAE(nn.Module):
    def __init__(s, P=784, H=500, Z=20, B=100):
        super().__init__()
        s.enc = nn.Linear(P, H); s.mu = nn.Linear(H, Z); s.logvar = nn.Linear(H, Z); s.dec = nn.Linear(Z, H); s.out = nn.Linear(H, P)
        s.register_buffer("eps", torch.randn(B, Z))
    def forward(s, x):
        h = torch.tanh(s.enc(x)); mu, lv = s.mu(h), s.logvar(h)
        logits = s.out(torch.tanh(s.dec(mu + torch.exp(0.5 * lv) * s.eps)))
        rec = -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(1)
        return 0.5 * (mu.pow(2) + lv.exp() - 1 - lv).sum(1) - rec
bench("vae_h500_z20_b100", VAE(), lambda: ((torch.rand(100, 784) < 0.5).float(), torch.zeros(100)), lambda out, y: out.mean())
