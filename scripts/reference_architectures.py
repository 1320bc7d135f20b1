#!/usr/bin/python3
"""Reference logits for the architectures kd loads (HF Llama, Qwen2, Mistral), independent of kd.

For each case below this writes, into test/fixtures/architectures/<case>/:
  config.json        the Hugging Face config (as a user's checkpoint has it: absent keys take HF's defaults)
  model.safetensors  small random float32 weights with HF tensor names (the format written by hand:
                     u64 LE header length, JSON header, raw little-endian data; torch 1.13 has no safetensors)
  reference.json     {"input_ids": [[...], ...], "logits": [B][L][V]} computed in float64 from those weights

The forward pass is written here from the semantics of transformers' modeling_llama.py / modeling_qwen2.py /
modeling_mistral.py and modeling_rope_utils.py (rope init functions 'default', 'linear', 'llama3'), and
masking_utils.py (sliding window: query q attends key k iff q - window < k <= q). It shares no code with kd.

Regenerate (Debian: `apt-get install python3-torch`, torch 1.13):
  /usr/bin/python3 scripts/reference_architectures.py
Output is deterministic (fixed torch.Generator seeds); test/architectures.test.ts reads it.
"""
import json
import math
import os
import struct

import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'test', 'fixtures', 'architectures')

# HF defaults for keys absent from a config.json (LlamaConfig / Qwen2Config / MistralConfig __init__).
HF_DEFAULTS = {
    'llama': dict(max_position_embeddings=2048, rms_norm_eps=1e-6, rope_theta=10000.0, tie_word_embeddings=False,
                  attention_bias=False, mlp_bias=False, head_dim=None, rope_scaling=None),
    'qwen2': dict(max_position_embeddings=32768, rms_norm_eps=1e-6, rope_theta=10000.0, tie_word_embeddings=False,
                  use_sliding_window=False, sliding_window=4096, max_window_layers=28, rope_scaling=None),
    'mistral': dict(max_position_embeddings=4096 * 32, rms_norm_eps=1e-6, rope_theta=10000.0,
                    tie_word_embeddings=False, sliding_window=4096, head_dim=None, rope_scaling=None),
}

BASE = dict(vocab_size=48, hidden_size=24, intermediate_size=32, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, hidden_act='silu')

CASES = {
    # Llama-2 / TinyLlama style: untied head, default rope, rms_norm_eps and max_position_embeddings absent.
    'llama-default': dict(model_type='llama', architectures=['LlamaForCausalLM'], **BASE),
    # head_dim 10 != hidden_size / heads = 6: q/o projections are 40 wide.
    'llama-head-dim': dict(model_type='llama', architectures=['LlamaForCausalLM'], **BASE, head_dim=10,
                           rms_norm_eps=1e-5, max_position_embeddings=64),
    'llama-bias': dict(model_type='llama', architectures=['LlamaForCausalLM'], **BASE, attention_bias=True,
                       mlp_bias=True, rms_norm_eps=1e-5, max_position_embeddings=64),
    'llama-rope-linear': dict(model_type='llama', architectures=['LlamaForCausalLM'], **BASE,
                              rope_scaling={'rope_type': 'linear', 'factor': 4.0}, max_position_embeddings=256),
    # Llama-3.2 style: tied, llama3 rope. With head_dim 12, θ = 300 and original 32 the 6 wavelengths
    # (6.3, 16.2, 41.9, 108, ...) fall in all three bands (< 8: kept, 8..32: smoothed, > 32: divided by
    # factor), and L = 40 reaches past position 32.
    'llama3': dict(model_type='llama', architectures=['LlamaForCausalLM'], **{**BASE, 'num_attention_heads': 2,
                   'num_key_value_heads': 1}, tie_word_embeddings=True, rope_theta=300.0,
                   rms_norm_eps=1e-5, max_position_embeddings=128,
                   rope_scaling={'rope_type': 'llama3', 'factor': 8.0, 'low_freq_factor': 1.0,
                                 'high_freq_factor': 4.0, 'original_max_position_embeddings': 32}),
    # Qwen2.5 style: tied, q/k/v biases (no o_proj bias), large rope_theta, sliding window present but off.
    'qwen2': dict(model_type='qwen2', architectures=['Qwen2ForCausalLM'], **BASE, tie_word_embeddings=True,
                  rope_theta=1000000.0, max_position_embeddings=128, use_sliding_window=False,
                  sliding_window=128, max_window_layers=2),
    # Qwen2 with use_sliding_window: layers >= max_window_layers (here layer 1) use the window.
    'qwen2-sliding': dict(model_type='qwen2', architectures=['Qwen2ForCausalLM'], **BASE, tie_word_embeddings=True,
                          rope_theta=1000000.0, max_position_embeddings=128, use_sliding_window=True,
                          sliding_window=3, max_window_layers=1),
    # Mistral-7B-v0.1 style: sliding window 4 over L = 12.
    'mistral': dict(model_type='mistral', architectures=['MistralForCausalLM'], **BASE, sliding_window=4,
                    max_position_embeddings=64),
}
SHAPE = {'llama3': (1, 40)}  # [batch, length]; (2, 12) otherwise


def resolved(cfg):
    """config.json + HF defaults for the absent keys (what transformers' Config.__init__ yields)."""
    full = {**HF_DEFAULTS[cfg['model_type']], **cfg}
    if full.get('head_dim') is None:
        full['head_dim'] = full['hidden_size'] // full['num_attention_heads']
    return full


def inv_freq(c):
    """modeling_rope_utils: default inv_freq = 1 / θ^(2i/d), then the rope_scaling variant."""
    d = c['head_dim']
    freq = 1.0 / (c['rope_theta'] ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
    rs = c.get('rope_scaling')
    kind = None if rs is None else rs.get('rope_type', rs.get('type'))
    if kind in (None, 'default'):
        return freq
    if kind == 'linear':
        return freq / rs['factor']
    if kind == 'llama3':
        factor, lo, hi = rs['factor'], rs['low_freq_factor'], rs['high_freq_factor']
        old = rs['original_max_position_embeddings']
        wavelen = 2 * math.pi / freq
        out = torch.where(wavelen > old / lo, freq / factor, freq)
        smooth = (old / wavelen - lo) / (hi - lo)
        medium = (wavelen >= old / hi) & (wavelen <= old / lo)
        return torch.where(medium, (1 - smooth) * out / factor + smooth * out, out)
    raise ValueError(kind)


def layer_window(c, i):
    """The sliding window of layer i, or None (full causal attention)."""
    if c['model_type'] == 'mistral':
        return c['sliding_window']
    if c['model_type'] == 'qwen2':
        on = c['use_sliding_window'] and c['sliding_window'] is not None and i >= c['max_window_layers']
        return c['sliding_window'] if on else None
    return None


def biases(c):
    """(q/k/v bias, o_proj bias, mlp bias) as the modeling files build their nn.Linear layers."""
    if c['model_type'] == 'qwen2':
        return True, False, False
    if c['model_type'] == 'mistral':
        return False, False, False
    return c['attention_bias'], c['attention_bias'], c['mlp_bias']


def tensor_shapes(c):
    d, hd, f = c['hidden_size'], c['head_dim'], c['intermediate_size']
    H, KV = c['num_attention_heads'], c['num_key_value_heads']
    qkv_b, o_b, mlp_b = biases(c)
    out = [('model.embed_tokens.weight', (c['vocab_size'], d))]
    for i in range(c['num_hidden_layers']):
        p = f'model.layers.{i}'
        out += [(f'{p}.input_layernorm.weight', (d,)),
                (f'{p}.self_attn.q_proj.weight', (H * hd, d)), (f'{p}.self_attn.k_proj.weight', (KV * hd, d)),
                (f'{p}.self_attn.v_proj.weight', (KV * hd, d)), (f'{p}.self_attn.o_proj.weight', (d, H * hd))]
        if qkv_b:
            out += [(f'{p}.self_attn.q_proj.bias', (H * hd,)), (f'{p}.self_attn.k_proj.bias', (KV * hd,)),
                    (f'{p}.self_attn.v_proj.bias', (KV * hd,))]
        if o_b:
            out += [(f'{p}.self_attn.o_proj.bias', (d,))]
        out += [(f'{p}.post_attention_layernorm.weight', (d,)),
                (f'{p}.mlp.gate_proj.weight', (f, d)), (f'{p}.mlp.up_proj.weight', (f, d)),
                (f'{p}.mlp.down_proj.weight', (d, f))]
        if mlp_b:
            out += [(f'{p}.mlp.gate_proj.bias', (f,)), (f'{p}.mlp.up_proj.bias', (f,)),
                    (f'{p}.mlp.down_proj.bias', (d,))]
    out.append(('model.norm.weight', (d,)))
    if not c['tie_word_embeddings']:
        out.append(('lm_head.weight', (c['vocab_size'], d)))
    return out


def random_weights(c, seed):
    """float32 weights scaled so activations are O(1) and attention is peaked (a wrong mask shows)."""
    g = torch.Generator().manual_seed(seed)
    w = {}
    for name, shape in tensor_shapes(c):
        if name.endswith('norm.weight'):
            t = 1 + 0.4 * (torch.rand(shape, generator=g, dtype=torch.float64) - 0.5)
        elif name.endswith('.bias'):
            t = 0.5 * torch.randn(shape, generator=g, dtype=torch.float64)
        elif 'embed' in name:
            t = torch.randn(shape, generator=g, dtype=torch.float64)
        else:
            gain = 2.0 if ('q_proj' in name or 'k_proj' in name) else 1.0
            t = gain * torch.randn(shape, generator=g, dtype=torch.float64) / math.sqrt(shape[1])
        w[name] = t.to(torch.float32)
    return w


def rms_norm(x, weight, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def forward(c, w, ids):
    """LlamaForCausalLM / Qwen2ForCausalLM / MistralForCausalLM forward, float64. ids [B, L] → [B, L, V]."""
    W = {k: v.to(torch.float64) for k, v in w.items()}
    B, L = ids.shape
    H, KV, hd = c['num_attention_heads'], c['num_key_value_heads'], c['head_dim']

    def lin(x, name):
        y = x @ W[name + '.weight'].T
        return y + W[name + '.bias'] if name + '.bias' in W else y

    pos = torch.arange(L, dtype=torch.float64)
    freqs = pos[:, None] * inv_freq(c)[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos(), emb.sin()  # attention_scaling is 1 for default, linear and llama3
    q_idx, k_idx = torch.arange(L)[:, None], torch.arange(L)[None, :]

    h = W['model.embed_tokens.weight'][ids]
    for i in range(c['num_hidden_layers']):
        p = f'model.layers.{i}'
        x = rms_norm(h, W[f'{p}.input_layernorm.weight'], c['rms_norm_eps'])
        q = lin(x, f'{p}.self_attn.q_proj').view(B, L, H, hd).transpose(1, 2)
        k = lin(x, f'{p}.self_attn.k_proj').view(B, L, KV, hd).transpose(1, 2)
        v = lin(x, f'{p}.self_attn.v_proj').view(B, L, KV, hd).transpose(1, 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k, v = k.repeat_interleave(H // KV, dim=1), v.repeat_interleave(H // KV, dim=1)  # repeat_kv
        allowed = k_idx <= q_idx
        window = layer_window(c, i)
        if window is not None:
            allowed = allowed & (k_idx > q_idx - window)
        scores = (q @ k.transpose(2, 3)) * hd ** -0.5
        scores = scores.masked_fill(~allowed, float('-inf'))
        ctx = torch.softmax(scores, dim=-1) @ v  # [B, H, L, hd]
        h = h + lin(ctx.transpose(1, 2).reshape(B, L, H * hd), f'{p}.self_attn.o_proj')
        x = rms_norm(h, W[f'{p}.post_attention_layernorm.weight'], c['rms_norm_eps'])
        gate = lin(x, f'{p}.mlp.gate_proj')
        h = h + lin(gate * torch.sigmoid(gate) * lin(x, f'{p}.mlp.up_proj'), f'{p}.mlp.down_proj')
    h = rms_norm(h, W['model.norm.weight'], c['rms_norm_eps'])
    head = W['model.embed_tokens.weight'] if c['tie_word_embeddings'] else W['lm_head.weight']
    return h @ head.T


def write_safetensors(path, tensors):
    header, blobs, offset = {'__metadata__': {'format': 'pt'}}, [], 0
    for name, t in tensors.items():
        raw = t.contiguous().numpy().astype('<f4').tobytes()
        header[name] = {'dtype': 'F32', 'shape': list(t.shape), 'data_offsets': [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    js = json.dumps(header, separators=(',', ':')).encode()
    js += b' ' * ((8 - (8 + len(js)) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(js)) + js + b''.join(blobs))


def main():
    for n, (name, cfg) in enumerate(CASES.items()):
        c = resolved(cfg)
        w = random_weights(c, 1000 + n)
        B, L = SHAPE.get(name, (2, 12))
        g = torch.Generator().manual_seed(2000 + n)
        ids = torch.randint(0, c['vocab_size'], (B, L), generator=g)
        logits = forward(c, w, ids)
        d = os.path.join(OUT, name)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, 'config.json'), 'w') as f:
            json.dump(cfg, f, indent=2)
            f.write('\n')
        write_safetensors(os.path.join(d, 'model.safetensors'), w)
        ref = {'input_ids': ids.tolist(), 'logits': [[[float(f'{x:.10g}') for x in row] for row in seq] for seq in logits.tolist()]}
        with open(os.path.join(d, 'reference.json'), 'w') as f:
            json.dump(ref, f, separators=(',', ':'))
            f.write('\n')
        print(f'{name}: L={L} params={sum(t.numel() for t in w.values())} |logits|max={logits.abs().max():.3f}')


if __name__ == '__main__':
    main()
