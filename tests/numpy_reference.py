"""NumPy transcriptions of the cells' equations, step by step, as written in the papers.

Independent of the JAX code: plain float64 loops over one sequence, no shared helpers.
Each function takes the params dict (as numpy) and one sequence x [time, d] and returns
(ys [time, out], final carry).
"""

import numpy as np


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def ln(x, g, b, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * g + b


def lstm_greff(p, x, cell):
    """Greff et al. 2017, Sec. 2 (vanilla LSTM), with the peephole/CIFG/LSTMP/LN options."""
    h_size = cell.hidden_size
    c = np.zeros(h_size)
    y = np.zeros(cell.proj_size or h_size)
    names = list(cell.gate_names)
    W = {n: p["w"][:, k] for k, n in enumerate(names)}
    R = {n: p["r"][:, k] for k, n in enumerate(names)}
    b = {n: (p["b"][k] if cell.bias else 0.0) for k, n in enumerate(names)}
    P = {n: p[f"p_{n}"] if (cell.peephole and n in names) else np.zeros(h_size) for n in "ifo"}
    ones = np.ones(h_size)
    ys = []
    for x_t in x:
        def pre(n):
            wx, ry = x_t @ W[n], y @ R[n]
            if cell.layer_norm:
                k = names.index(n)
                wx = ln(wx, p["ln_x_scale"][k], p["ln_x_bias"][k])
                ry = ln(ry, p["ln_r_scale"][k], p["ln_r_bias"][k])
            return wx + ry + b[n]

        z = np.tanh(pre("z")) if cell.input_activation else pre("z")
        f = sigmoid(pre("f") + P["f"] * c) if "f" in names else ones
        if cell.cifg:
            i = 1.0 - f
        else:
            i = sigmoid(pre("i") + P["i"] * c) if "i" in names else ones
        c = z * i + c * f
        o = sigmoid(pre("o") + P["o"] * c) if "o" in names else ones
        c_hat = ln(c, p["ln_c_scale"], p["ln_c_bias"]) if cell.layer_norm else c
        y = (np.tanh(c_hat) if cell.output_activation else c_hat) * o
        if cell.proj_size:
            y = y @ p["w_proj"]
        ys.append(y)
    return np.stack(ys), (c, y)


def gru(p, x, cell):
    """Cho et al. 2014 (reset before R_n) or PyTorch's form (reset after R_n)."""
    h = np.zeros(cell.hidden_size)
    bx = p["b_x"] if cell.bias else np.zeros((3, cell.hidden_size))
    bh = p["b_h"] if (cell.bias and cell.reset_after) else np.zeros((3, cell.hidden_size))
    ys = []
    for x_t in x:
        r = sigmoid(x_t @ p["w"][:, 0] + bx[0] + h @ p["r"][:, 0] + bh[0])
        z = sigmoid(x_t @ p["w"][:, 1] + bx[1] + h @ p["r"][:, 1] + bh[1])
        if cell.reset_after:
            n = np.tanh(x_t @ p["w"][:, 2] + bx[2] + r * (h @ p["r"][:, 2] + bh[2]))
        else:
            n = np.tanh(x_t @ p["w"][:, 2] + bx[2] + (r * h) @ p["r"][:, 2])
        h = (1 - z) * n + z * h
        ys.append(h)
    return np.stack(ys), h


def elman(p, x, cell):
    act = np.tanh if cell.nonlinearity == "tanh" else (lambda v: np.maximum(v, 0.0))
    h = np.zeros(cell.hidden_size)
    ys = []
    for x_t in x:
        h = act(x_t @ p["w"] + h @ p["r"] + (p["b"] if cell.bias else 0.0))
        ys.append(h)
    return np.stack(ys), h


def mgu(p, x, cell):
    """Zhou et al. 2016, Eq. (9)-(11)."""
    h = np.zeros(cell.hidden_size)
    b = p["b"] if cell.bias else np.zeros((2, cell.hidden_size))
    ys = []
    for x_t in x:
        f = sigmoid(x_t @ p["w"][:, 0] + h @ p["r"][:, 0] + b[0])
        h_tilde = np.tanh(x_t @ p["w"][:, 1] + (f * h) @ p["r"][:, 1] + b[1])
        h = (1 - f) * h + f * h_tilde
        ys.append(h)
    return np.stack(ys), h


def ugrnn(p, x, cell):
    """Collins et al. 2017, Appendix: c = tanh(.), g = sigmoid(.), h = g h + (1 - g) c."""
    h = np.zeros(cell.hidden_size)
    b = p["b"] if cell.bias else np.zeros((2, cell.hidden_size))
    ys = []
    for x_t in x:
        c = np.tanh(x_t @ p["w"][:, 0] + h @ p["r"][:, 0] + b[0])
        g = sigmoid(x_t @ p["w"][:, 1] + h @ p["r"][:, 1] + b[1])
        h = g * h + (1 - g) * c
        ys.append(h)
    return np.stack(ys), h


def _min_candidate(v, candidate):
    """Feng et al. 2024, Sec. 4.1: g(x) = x + 0.5 (x >= 0), sigmoid(x) (x < 0); or identity / tanh."""
    if candidate == "g":
        return np.where(v >= 0, v + 0.5, sigmoid(v))
    return v if candidate == "linear" else np.tanh(v)


def _min_rnn(p, x, cell, update, h0, resets):
    """The loop both minRNNs share; update(k [gates, s], h~, h) -> h. resets[t]: h_{t-1} := 0."""
    s = int(cell.hidden_size * cell.expansion)
    h = np.zeros(s) if h0 is None else np.asarray(h0, np.float64)
    b = p["b"] if cell.bias else np.zeros(p["w"].shape[1:])
    ys = []
    for t, x_t in enumerate(x):
        k = np.einsum("d,dgs->gs", x_t, p["w"]) + b
        if resets is not None and resets[t]:
            h = np.zeros(s)
        h = update(k, _min_candidate(k[-1], cell.candidate), h)
        ys.append(h @ p["w_out"] if cell.expansion != 1 else h)
    return np.stack(ys), h


def mingru(p, x, cell, h0=None, resets=None):
    """Feng et al. 2024, Sec. 3.1: z = sigmoid(Linear(x)), h~ = g(Linear(x)), h = (1 - z) h + z h~;
    y = h W_out with an expansion (Sec. 4.1)."""

    def update(k, cand, h):
        z = sigmoid(k[0])
        return (1 - z) * h + z * cand

    return _min_rnn(p, x, cell, update, h0, resets)


def minlstm(p, x, cell, h0=None, resets=None):
    """Feng et al. 2024, Sec. 3.2: f, i = sigmoid(Linear(x)); normalised f' = f / (f + i),
    i' = i / (f + i); h~ = g(Linear(x)); h = f' h + i' h~."""

    def update(k, cand, h):
        f, i = sigmoid(k[0]), sigmoid(k[1])
        if cell.normalise:
            f, i = f / (f + i), i / (f + i)
        return f * h + i * cand

    return _min_rnn(p, x, cell, update, h0, resets)
