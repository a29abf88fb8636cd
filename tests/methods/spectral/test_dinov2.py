"""DINOv2 backbones: the official key layout loads strictly, LayerScale and registers are used, registers are
dropped from the features, and the position-embedding rule is the official one per variant."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from unsegcli.model.dino_keys import final_tokens, is_dinov2, last_block_keys, load_backbone, pos_rule_of

from .files import dinov2_state, save_dinov2


def reference(sd: dict, x: torch.Tensor, registers: int, antialias: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """DINOv2's forward written out from its definition (no timm): -> (last-block keys, final-normed tokens)."""
    dim = sd["cls_token"].shape[-1]
    heads = dim // 64
    t = F.conv2d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=14)
    g = t.shape[-1]
    t = t.flatten(2).transpose(1, 2)
    side = int((sd["pos_embed"].shape[1] - 1) ** 0.5)
    table = sd["pos_embed"][:, 1:].reshape(1, side, side, dim).permute(0, 3, 1, 2)
    if antialias:  # register models: exact size, antialiased
        pe = F.interpolate(table, size=(g, g), mode="bicubic", antialias=True)
    else:  # plain DINOv2: interpolate_offset 0.1
        pe = F.interpolate(table, scale_factor=((g + 0.1) / side,) * 2, mode="bicubic")
    pe = torch.cat([sd["pos_embed"][:, :1], pe.permute(0, 2, 3, 1).reshape(1, g * g, dim)], 1)
    t = torch.cat([sd["cls_token"], t], 1) + pe
    if registers:
        t = torch.cat([t[:, :1], sd["register_tokens"], t[:, 1:]], 1)

    def ln(v, name):
        return F.layer_norm(v, (dim,), sd[name + ".weight"], sd[name + ".bias"], eps=1e-6)

    depth = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
    for i in range(depth):
        b = f"blocks.{i}."
        qkv = F.linear(ln(t, b + "norm1"), sd[b + "attn.qkv.weight"], sd[b + "attn.qkv.bias"])
        if i == depth - 1:
            keys = qkv[:, 1 + registers :, dim : 2 * dim]
        q, k, v = qkv.reshape(1, -1, 3, heads, 64).permute(2, 0, 3, 1, 4)
        a = ((q @ k.transpose(-1, -2)) * 64**-0.5).softmax(-1) @ v
        a = F.linear(a.transpose(1, 2).reshape(1, -1, dim), sd[b + "attn.proj.weight"], sd[b + "attn.proj.bias"])
        t = t + sd[b + "ls1.gamma"] * a
        h = F.gelu(F.linear(ln(t, b + "norm2"), sd[b + "mlp.fc1.weight"], sd[b + "mlp.fc1.bias"]))
        t = t + sd[b + "ls2.gamma"] * F.linear(h, sd[b + "mlp.fc2.weight"], sd[b + "mlp.fc2.bias"])
    return keys, ln(t, "norm")[:, 1 + registers :]


def test_official_dinov2_files_give_the_official_features(tmp_path):
    x = torch.randn(1, 3, 84, 84)  # a 6 x 6 grid on a 4 x 4 table: the position rule matters
    for registers in (0, 4):
        sd = dinov2_state(registers=registers, seed=registers)
        vit = load_backbone(save_dinov2(tmp_path / f"r{registers}.pth", registers=registers, seed=registers))
        assert is_dinov2(vit) and pos_rule_of(vit) == ("size-antialias" if registers else "dino")
        keys, tokens = reference(sd, x, registers, antialias=bool(registers))
        assert last_block_keys(vit, x).shape == (1, 36, 64)  # CLS and the registers dropped
        assert torch.allclose(last_block_keys(vit, x), keys, atol=1e-4)
        assert torch.allclose(final_tokens(vit, x), tokens, atol=1e-4)
    # the registers change every patch feature: they are really in the sequence
    plain = dinov2_state(registers=4, seed=4)
    del plain["register_tokens"]
    torch.save(plain, tmp_path / "no_reg.pth")
    with_reg = load_backbone(save_dinov2(tmp_path / "reg.pth", registers=4, seed=4))
    without = load_backbone(tmp_path / "no_reg.pth")
    assert not torch.allclose(final_tokens(with_reg, x, "dino"), final_tokens(without, x, "dino"), atol=1e-3)
