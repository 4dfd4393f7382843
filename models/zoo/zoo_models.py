"""The model zoo's PyTorch modules: small versions of real architectures.

Each builder returns (module, example inputs, labels, spec) from a fixed seed. The
torchvision models are torchvision's own classes and blocks at reduced width, depth and
resolution (32x32 images, 10 classes); the others are written here in the way such models
are usually written (nn.TransformerEncoder, nn.LSTM, masked_fill on a registered buffer,
tied embeddings...). No model has randomness in its forward pass: Dropout modules are
replaced by nn.Identity and stochastic depth is off, so a training-mode export computes
what PyTorch computes.

The labels of every model follow mpc's cross-entropy convention: the classes are the last
axis of the first output and the labels have the output's shape without it (the UNet
returns its per-pixel logits channels-last for that reason).
"""

from typing import Callable, Dict, List, Tuple

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.models import efficientnet as tv_efficientnet
from torchvision.models import mobilenetv3 as tv_mobilenetv3
from torchvision.models import resnet as tv_resnet
from torchvision.models import squeezenet as tv_squeezenet
from torchvision.ops.misc import Conv2dNormActivation

CLASSES = 10
BATCH = 4
IMAGE = 32


def no_dropout(model: nn.Module) -> nn.Module:
    """Replaces every nn.Dropout by nn.Identity (a deterministic forward in training mode)."""
    for name, child in model.named_children():
        if isinstance(child, nn.Dropout):
            setattr(model, name, nn.Identity())
        else:
            no_dropout(child)
    return model


def randomize_norms(model: nn.Module) -> None:
    """BatchNorm affine parameters and running statistics away from their defaults (1, 0,
    0, 1), so that eval-mode exports and gradients through gamma/beta are real tests."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            with torch.no_grad():
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.1)
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 1.5)


def break_ties(model: nn.Module) -> None:
    """Adds noise to every parameter whose elements are all equal (zero biases, LayerNorm's
    ones and zeros): an exporter that folds constants also merges initializers of equal
    contents, which would tie parameters that PyTorch trains separately."""
    gen = torch.Generator().manual_seed(1000)
    with torch.no_grad():
        for p in model.parameters():
            if p.numel() > 1 and bool((p == p.reshape(-1)[0]).all()):
                p.add_(torch.randn(p.shape, generator=gen) * 0.05)


def images(channels: int = 3, size: int = IMAGE) -> torch.Tensor:
    return torch.randn(BATCH, channels, size, size)


def class_labels(classes: int = CLASSES, shape: Tuple[int, ...] = (BATCH,)) -> torch.Tensor:
    return torch.randint(0, classes, shape, dtype=torch.int64)


# ---- torchvision CNNs ----------------------------------------------------------------------


class SmallResNet(tv_resnet.ResNet):
    """torchvision's ResNet-18 (BasicBlock, [2, 2, 2, 2]) at 1/16 width: 4-8-16-32 channels."""

    WIDTH_DIV = 16

    def __init__(self, num_classes: int) -> None:
        self._first_layer = True
        super().__init__(tv_resnet.BasicBlock, [2, 2, 2, 2], num_classes=num_classes)
        stem = 64 // self.WIDTH_DIV
        self.conv1 = nn.Conv2d(3, stem, kernel_size=7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.bn1 = nn.BatchNorm2d(stem)
        self.fc = nn.Linear(512 // self.WIDTH_DIV, num_classes)

    def _make_layer(self, block, planes, blocks, stride=1, dilate=False):
        if self._first_layer:
            self.inplanes = 64 // self.WIDTH_DIV  # the narrowed stem's width
            self._first_layer = False
        return super()._make_layer(block, planes // self.WIDTH_DIV, blocks, stride, dilate)


def resnet18():
    torch.manual_seed(1)
    model = SmallResNet(CLASSES)
    randomize_norms(model)
    return model, [images()], class_labels()


def mobilenet_v2():
    """torchvision's MobileNetV2 at width 0.25 and one block per stage but for two repeated
    stages (10 inverted residual blocks instead of 17), its last 1x1 convolution 1280 -> 320."""
    torch.manual_seed(2)
    # (expansion t, channels c, repeats n, stride s) as in torchvision's default setting
    setting = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 2, 2], [6, 64, 1, 2], [6, 96, 2, 1], [6, 160, 1, 2], [6, 320, 1, 1]]
    model = no_dropout(torchvision.models.mobilenet_v2(width_mult=0.25, num_classes=CLASSES, inverted_residual_setting=setting))
    last = model.features[-1]
    model.features[-1] = Conv2dNormActivation(last[0].in_channels, 320, kernel_size=1, activation_layer=nn.ReLU6)
    model.classifier[-1] = nn.Linear(320, CLASSES)
    randomize_norms(model)
    return model, [images()], class_labels()


def mobilenet_v3_small():
    torch.manual_seed(3)
    setting, last_channel = tv_mobilenetv3._mobilenet_v3_conf("mobilenet_v3_small", width_mult=0.25)
    model = no_dropout(tv_mobilenetv3.MobileNetV3(setting, last_channel // 4, num_classes=CLASSES))
    randomize_norms(model)
    return model, [images()], class_labels()


def efficientnet_b0():
    torch.manual_seed(4)
    setting, last_channel = tv_efficientnet._efficientnet_conf("efficientnet_b0", width_mult=0.125, depth_mult=0.34)
    model = tv_efficientnet.EfficientNet(setting, dropout=0.0, stochastic_depth_prob=0.0, num_classes=CLASSES, last_channel=last_channel)
    model = no_dropout(model)
    randomize_norms(model)
    return model, [images()], class_labels()


def squeezenet1_1():
    """torchvision's SqueezeNet 1.1 (its Fire modules, its layer sequence) at 1/4 width."""
    torch.manual_seed(5)
    model = no_dropout(torchvision.models.squeezenet1_1(num_classes=CLASSES))
    Fire = tv_squeezenet.Fire
    model.features = nn.Sequential(
        nn.Conv2d(3, 16, kernel_size=3, stride=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
        Fire(16, 4, 16, 16),
        Fire(32, 4, 16, 16),
        nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
        Fire(32, 8, 32, 32),
        Fire(64, 8, 32, 32),
        nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
        Fire(64, 12, 48, 48),
        Fire(96, 12, 48, 48),
        Fire(96, 16, 64, 64),
        Fire(128, 16, 64, 64),
    )
    final = nn.Conv2d(128, CLASSES, kernel_size=1)
    nn.init.normal_(final.weight, 0.0, 0.1)
    nn.init.constant_(final.bias, 0.1)  # ReLU after it: keep most logits alive
    model.classifier[1] = final
    return model, [images()], class_labels()


# ---- transformers --------------------------------------------------------------------------


class TinyViT(nn.Module):
    """Vision transformer: 4x4 patch embedding (Conv2d), class token, learned positions,
    nn.TransformerEncoder (pre-norm, GELU, batch_first), head on the class token."""

    def __init__(self, size=16, patch=4, width=32, heads=4, layers=2, classes=CLASSES) -> None:
        super().__init__()
        tokens = (size // patch) ** 2
        self.patch_embed = nn.Conv2d(3, width, kernel_size=patch, stride=patch)
        self.cls_token = nn.Parameter(torch.randn(1, 1, width) * 0.02)
        self.pos_embed = nn.Parameter(torch.randn(1, tokens + 1, width) * 0.02)
        layer = nn.TransformerEncoderLayer(width, heads, dim_feedforward=2 * width, dropout=0.0,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers)
        # nn.TransformerEncoder starts every layer as a copy of `layer`: draw each anew.
        with torch.no_grad():
            for name, p in self.encoder.named_parameters():
                if "norm" in name:
                    p.copy_(torch.randn(p.shape) * 0.05 + (1.0 if name.endswith("weight") else 0.0))
                elif p.dim() > 1:
                    nn.init.xavier_uniform_(p)
                else:
                    p.normal_(0.0, 0.05)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.patch_embed(x).flatten(2).transpose(1, 2)  # [N, tokens, width]
        cls = self.cls_token.expand(p.shape[0], -1, -1)
        h = torch.cat([cls, p], dim=1) + self.pos_embed
        h = self.encoder(h)
        return self.head(self.norm(h[:, 0]))


def vit():
    torch.manual_seed(6)
    return TinyViT(), [images(size=16)], class_labels()


class BertLayer(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, width // heads
        self.query = nn.Linear(width, width)
        self.key = nn.Linear(width, width)
        self.value = nn.Linear(width, width)
        self.attn_out = nn.Linear(width, width)
        self.attn_norm = nn.LayerNorm(width, eps=1e-12)
        self.intermediate = nn.Linear(width, 4 * width)
        self.output = nn.Linear(4 * width, width)
        self.out_norm = nn.LayerNorm(width, eps=1e-12)

    def split(self, t: torch.Tensor) -> torch.Tensor:
        n, s, _ = t.shape
        return t.view(n, s, self.heads, self.head_dim).permute(0, 2, 1, 3)

    def forward(self, h: torch.Tensor, additive_mask: torch.Tensor) -> torch.Tensor:
        q, k, v = self.split(self.query(h)), self.split(self.key(h)), self.split(self.value(h))
        scores = torch.matmul(q, k.transpose(-1, -2)) / (self.head_dim ** 0.5) + additive_mask
        ctx = torch.matmul(torch.softmax(scores, dim=-1), v).permute(0, 2, 1, 3).contiguous()
        ctx = ctx.view(h.shape[0], h.shape[1], -1)
        h = self.attn_norm(h + self.attn_out(ctx))
        return self.out_norm(h + self.output(F.gelu(self.intermediate(h))))


class TinyBert(nn.Module):
    """BERT-style encoder classifier: word + position + token-type embeddings, post-norm
    layers, an attention mask turned into an additive (1 - mask) * -10000 bias, a tanh pooler
    on the first token and a classifier."""

    def __init__(self, vocab=64, seq=12, width=32, heads=4, layers=2, classes=3) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab, width)
        self.position_embeddings = nn.Embedding(seq, width)
        self.token_type_embeddings = nn.Embedding(2, width)
        self.emb_norm = nn.LayerNorm(width, eps=1e-12)
        self.layers = nn.ModuleList([BertLayer(width, heads) for _ in range(layers)])
        self.pooler = nn.Linear(width, width)
        self.classifier = nn.Linear(width, classes)
        self.register_buffer("position_ids", torch.arange(seq).unsqueeze(0))
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                m.weight.data.normal_(0.0, 0.05)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        seq = input_ids.shape[1]
        h = (self.word_embeddings(input_ids) + self.position_embeddings(self.position_ids[:, :seq])
             + self.token_type_embeddings(torch.zeros_like(input_ids)))
        h = self.emb_norm(h)
        additive = (1.0 - attention_mask[:, None, None, :].to(h.dtype)) * -10000.0
        for layer in self.layers:
            h = layer(h, additive)
        pooled = torch.tanh(self.pooler(h[:, 0]))
        return self.classifier(pooled)


def bert():
    torch.manual_seed(7)
    model = TinyBert()
    ids = torch.randint(0, 64, (BATCH, 12), dtype=torch.int64)
    lengths = torch.tensor([12, 9, 5, 11])
    mask = (torch.arange(12)[None, :] < lengths[:, None]).to(torch.int64)
    return model, [ids, mask], class_labels(3)


class GptAttention(nn.Module):
    def __init__(self, width: int, heads: int, seq: int) -> None:
        super().__init__()
        self.heads = heads
        self.c_attn = nn.Linear(width, 3 * width)
        self.c_proj = nn.Linear(width, width)
        # GPT-2's causal mask: a registered (persistent) buffer of ones on and below the diagonal.
        self.register_buffer("bias", torch.tril(torch.ones(seq, seq)).view(1, 1, seq, seq))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, c = x.shape
        q, k, v = self.c_attn(x).split(c, dim=2)
        q = q.view(n, t, self.heads, c // self.heads).transpose(1, 2)
        k = k.view(n, t, self.heads, c // self.heads).transpose(1, 2)
        v = v.view(n, t, self.heads, c // self.heads).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / (k.shape[-1] ** 0.5))
        att = att.masked_fill(self.bias[:, :, :t, :t] == 0, float("-inf"))
        y = (F.softmax(att, dim=-1) @ v).transpose(1, 2).contiguous().view(n, t, c)
        return self.c_proj(y)


class GptBlock(nn.Module):
    def __init__(self, width: int, heads: int, seq: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = GptAttention(width, heads, seq)
        self.ln_2 = nn.LayerNorm(width)
        self.c_fc = nn.Linear(width, 4 * width)
        self.c_proj = nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.c_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class TinyGpt2(nn.Module):
    """GPT-2-style decoder: token + position embeddings, pre-norm blocks with a causal mask
    buffer and masked_fill(-inf), tanh GELU, final LayerNorm, LM head tied to the token
    embedding."""

    def __init__(self, vocab=64, seq=16, width=32, heads=4, layers=2) -> None:
        super().__init__()
        self.wte = nn.Embedding(vocab, width)
        self.wpe = nn.Embedding(seq, width)
        self.h = nn.ModuleList([GptBlock(width, heads, seq) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(width)
        self.lm_head = nn.Linear(width, vocab, bias=False)
        self.lm_head.weight = self.wte.weight  # tied
        for name, p in self.named_parameters():
            if p.dim() == 2:
                nn.init.normal_(p, 0.0, 0.05)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        t = idx.shape[1]
        pos = torch.arange(0, t, dtype=torch.long, device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for block in self.h:
            x = block(x)
        return self.lm_head(self.ln_f(x))


def gpt2():
    torch.manual_seed(8)
    model = TinyGpt2()
    idx = torch.randint(0, 64, (BATCH, 16), dtype=torch.int64)
    return model, [idx], class_labels(64, (BATCH, 16))


# ---- recurrent -----------------------------------------------------------------------------


class LstmClassifier(nn.Module):
    """Token classifier: embedding, nn.LSTM (batch_first), linear head on the last step."""

    def __init__(self, vocab=32, emb=16, hidden=24, classes=4) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, emb)
        self.lstm = nn.LSTM(emb, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.embedding(tokens))
        return self.fc(out[:, -1])


def lstm():
    torch.manual_seed(9)
    return LstmClassifier(), [torch.randint(0, 32, (BATCH, 10), dtype=torch.int64)], class_labels(4)


class GruClassifier(nn.Module):
    """Sequence classifier on float features: two-layer nn.GRU (batch_first), head on the
    last layer's final hidden state."""

    def __init__(self, features=8, hidden=24, classes=4) -> None:
        super().__init__()
        self.gru = nn.GRU(features, hidden, num_layers=2, batch_first=True)
        self.fc = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, h = self.gru(x)
        return self.fc(h[-1])


def gru():
    torch.manual_seed(10)
    return GruClassifier(), [torch.randn(BATCH, 10, 8)], class_labels(4)


# ---- audio and segmentation ----------------------------------------------------------------


class AudioCnn(nn.Module):
    """Raw-waveform classifier: strided Conv1d + BatchNorm1d + ReLU stages, max pooling,
    global average pooling, linear head."""

    def __init__(self, classes=6) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(1, 8, kernel_size=15, stride=4, padding=7), nn.BatchNorm1d(8), nn.ReLU(),
            nn.MaxPool1d(2),
            nn.Conv1d(8, 16, kernel_size=5, stride=2, padding=2), nn.BatchNorm1d(16), nn.ReLU(),
            nn.Conv1d(16, 16, kernel_size=3, padding=1), nn.BatchNorm1d(16), nn.ReLU(),
            nn.AdaptiveAvgPool1d(1),
        )
        self.fc = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.features(x), 1))


def audio_cnn():
    torch.manual_seed(11)
    model = AudioCnn()
    randomize_norms(model)
    return model, [torch.randn(BATCH, 1, 400)], class_labels(6)


def conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class TinyUNet(nn.Module):
    """Two-level UNet: ConvTranspose2d on one up path, nn.Upsample(bilinear) on the other,
    skip concatenations, and an F.interpolate(nearest) side output from the bottleneck added
    to the head. Per-pixel logits, returned channels-last [N, H, W, classes]."""

    def __init__(self, classes=3) -> None:
        super().__init__()
        self.enc1 = conv_bn_relu(3, 8)
        self.enc2 = conv_bn_relu(8, 16)
        self.bottleneck = conv_bn_relu(16, 32)
        self.up2 = nn.ConvTranspose2d(32, 16, kernel_size=2, stride=2)
        self.dec2 = conv_bn_relu(32, 16)
        self.up1 = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.reduce1 = nn.Conv2d(16, 8, kernel_size=1)
        self.dec1 = conv_bn_relu(16, 8)
        self.head = nn.Conv2d(8, classes, kernel_size=1)
        self.side = nn.Conv2d(32, classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        b = self.bottleneck(F.max_pool2d(e2, 2))
        d2 = self.dec2(torch.cat([self.up2(b), e2], dim=1))
        d1 = self.dec1(torch.cat([self.reduce1(self.up1(d2)), e1], dim=1))
        side = F.interpolate(self.side(b), scale_factor=4, mode="nearest")
        return (self.head(d1) + side).permute(0, 2, 3, 1)


def unet():
    torch.manual_seed(12)
    model = TinyUNet()
    randomize_norms(model)
    return model, [images(size=16)], class_labels(3, (BATCH, 16, 16))


Builder = Callable[[], Tuple[nn.Module, List[torch.Tensor], torch.Tensor]]

# name -> (builder, ONNX input names)
MODELS: Dict[str, Tuple[Builder, List[str]]] = {
    "resnet18": (resnet18, ["input"]),
    "mobilenet_v2": (mobilenet_v2, ["input"]),
    "mobilenet_v3_small": (mobilenet_v3_small, ["input"]),
    "efficientnet_b0": (efficientnet_b0, ["input"]),
    "squeezenet1_1": (squeezenet1_1, ["input"]),
    "vit": (vit, ["input"]),
    "bert": (bert, ["input_ids", "attention_mask"]),
    "gpt2": (gpt2, ["input_ids"]),
    "lstm": (lstm, ["tokens"]),
    "gru": (gru, ["input"]),
    "audio_cnn": (audio_cnn, ["waveform"]),
    "unet": (unet, ["input"]),
}
