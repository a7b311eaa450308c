# The PyTorch side of the training-step benchmark (the same models and batch sizes as dlhist's side, kept
# unchanged between benchmark runs so tables stay comparable); `cargo xtask bench` runs it against dlhist/examples/train_steps.rs.
"""PyTorch CPU reference: median training-step time for the models of the original notebooks.
Run: python torch_steps.py  (prints one JSON line per model)."""
import json, time, statistics, torch, torch.nn as nn, torch.nn.functional as F
torch.manual_seed(0)
torch.set_num_threads(int(__import__('os').environ.get('THREADS', '2')))

def bench(name, model, make_batch, loss_fn, steps=20, warmup=3):
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = make_batch()
    times = []
    for i in range(warmup + steps):
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
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
        x = s.tok(idx) + s.pos(torch.arange(T))
        return s.head(s.ln(s.blocks(x, mask=s.mask[:T, :T], is_causal=True)))
bench("gpt_char_L4_C128_T64_b12", GPT(), lambda: (torch.randint(0, 65, (12, 64)), torch.randint(0, 65, (12, 64))),
      lambda out, y: F.cross_entropy(out.reshape(-1, 65), y.reshape(-1)))

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
