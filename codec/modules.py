"""Building blocks of the codec's convolutional encoder and decoder.

Every convolution is weight-normalised and pads itself so that a stride-`s` layer maps a
length that is a multiple of `s` to exactly `T / s` (and a transposed one to `T * s`). In
causal mode all padding goes on the left and transposed convolutions trim on the right, so
no output sample looks at input later than the frame it belongs to.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm


class Snake(nn.Module):
    """x + 1/alpha * sin^2(alpha * x), with a learned frequency alpha per channel."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))  # (1, C, 1)
        self.alpha.no_weight_decay = True

    def forward(self, x: Tensor) -> Tensor:  # (B, C, T) -> (B, C, T)
        inv_alpha = 1.0 / (self.alpha + 1e-9)
        if _needs_grad(x, self.alpha):
            return x + inv_alpha * torch.sin(self.alpha * x).pow(2)
        # Inference: four passes over one temporary instead of five over five.
        s = (x * self.alpha).sin_().square_()
        return torch.addcmul(x, s, inv_alpha, out=s)


def _needs_grad(*tensors: Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def _split_padding(total: int, causal: bool) -> tuple[int, int]:
    """(left, right) zero padding: all on the left when causal, else centred."""
    return (total, 0) if causal else (total - total // 2, total // 2)


class Conv1d(nn.Module):
    """Weight-normalised conv that keeps `T -> T / stride` for T a multiple of the stride."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        dilation: int = 1,
        causal: bool = False,
    ) -> None:
        super().__init__()
        total = (kernel_size - 1) * dilation + 1 - stride
        if total < 0:
            raise ValueError(f"kernel {kernel_size} is shorter than its stride {stride}")
        left, right = _split_padding(total, causal)
        # Symmetric padding is done by the conv itself (no copy); otherwise by F.pad.
        self.pad = (0, 0) if left == right else (left, right)
        conv = nn.Conv1d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            dilation=dilation,
            padding=left if left == right else 0,
        )
        self.conv = weight_norm(conv)

    def forward(self, x: Tensor) -> Tensor:  # (B, C_in, T) -> (B, C_out, T / stride)
        if self.pad != (0, 0):
            x = F.pad(x, self.pad)
        return self.conv(x)


class ConvTranspose1d(nn.Module):
    """Weight-normalised upsampling by `stride` (kernel 2 * stride): `T -> T * stride`."""

    def __init__(
        self, in_channels: int, out_channels: int, stride: int, *, causal: bool = False
    ) -> None:
        super().__init__()
        # The full output has (T + 1) * stride samples, `stride` too many. Centred: the conv
        # drops ceil(stride / 2) each side and `output_padding` gives one back on the right
        # when the stride is odd. Causal: all `stride` come off the right, in forward.
        self.causal_trim = stride if causal else 0
        padding = 0 if causal else (stride + 1) // 2
        conv = nn.ConvTranspose1d(
            in_channels,
            out_channels,
            2 * stride,
            stride=stride,
            padding=padding,
            output_padding=0 if causal else stride % 2,
        )
        self.conv = weight_norm(conv)

    def forward(self, x: Tensor) -> Tensor:  # (B, C_in, T) -> (B, C_out, T * stride)
        y = self.conv(x)
        if self.causal_trim:
            y = y[..., : y.shape[-1] - self.causal_trim]
        return y


class ResidualUnit(nn.Module):
    """Snake -> dilated conv (bottlenecked by `compress`) -> Snake -> 1x1 conv, plus skip."""

    def __init__(
        self, channels: int, *, kernel_size: int, dilation: int, compress: int, causal: bool
    ) -> None:
        super().__init__()
        hidden = max(1, channels // compress)
        self.block = nn.Sequential(
            Snake(channels),
            Conv1d(channels, hidden, kernel_size, dilation=dilation, causal=causal),
            Snake(hidden),
            Conv1d(hidden, channels, 1),
        )

    def forward(self, x: Tensor) -> Tensor:  # (B, C, T) -> (B, C, T)
        y = self.block(x)
        return x + y if _needs_grad(x, y) else y.add_(x)


def residual_stack(
    channels: int, *, kernel_size: int, dilations: tuple[int, ...], compress: int, causal: bool
) -> list[nn.Module]:
    return [
        ResidualUnit(
            channels, kernel_size=kernel_size, dilation=d, compress=compress, causal=causal
        )
        for d in dilations
    ]


class EncoderBlock(nn.Sequential):
    """Residual units at `in_channels`, then Snake and a strided conv down by `stride`."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        *,
        kernel_size: int,
        dilations: tuple[int, ...],
        compress: int,
        causal: bool,
    ) -> None:
        super().__init__(
            *residual_stack(
                in_channels,
                kernel_size=kernel_size,
                dilations=dilations,
                compress=compress,
                causal=causal,
            ),
            Snake(in_channels),
            Conv1d(in_channels, out_channels, 2 * stride, stride=stride, causal=causal),
        )


class DecoderBlock(nn.Sequential):
    """Snake and a transposed conv up by `stride`, then residual units at `out_channels`."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        *,
        kernel_size: int,
        dilations: tuple[int, ...],
        compress: int,
        causal: bool,
    ) -> None:
        super().__init__(
            Snake(in_channels),
            ConvTranspose1d(in_channels, out_channels, stride, causal=causal),
            *residual_stack(
                out_channels,
                kernel_size=kernel_size,
                dilations=dilations,
                compress=compress,
                causal=causal,
            ),
        )


class Encoder(nn.Module):
    """Waveform to latent: (B, 1, T) -> (B, latent_dim, T / prod(strides)).

    `channels[i]` is the width before the i-th downsampling; `channels[-1]` after the last.
    """

    def __init__(
        self,
        channels: tuple[int, ...],
        strides: tuple[int, ...],
        latent_dim: int,
        *,
        kernel_size: int = 7,
        dilations: tuple[int, ...] = (1, 3, 9),
        compress: int = 2,
        causal: bool = False,
    ) -> None:
        super().__init__()
        if len(channels) != len(strides) + 1:
            raise ValueError("encoder needs one more channel width than strides")
        blocks: list[nn.Module] = [Conv1d(1, channels[0], 7, causal=causal)]
        for c_in, c_out, stride in zip(channels[:-1], channels[1:], strides):
            blocks.append(
                EncoderBlock(
                    c_in,
                    c_out,
                    stride,
                    kernel_size=kernel_size,
                    dilations=dilations,
                    compress=compress,
                    causal=causal,
                )
            )
        blocks += [Snake(channels[-1]), Conv1d(channels[-1], latent_dim, 3, causal=causal)]
        self.layers = nn.Sequential(*blocks)

    def forward(self, wav: Tensor) -> Tensor:  # (B, 1, T) -> (B, D, F)
        return self.layers(wav)


class Decoder(nn.Module):
    """Latent to waveform: (B, latent_dim, F) -> (B, 1, F * prod(strides)).

    `strides` are in decoder order (the encoder's reversed); `channels[0]` is the width after
    the input conv, `channels[i + 1]` the width after the i-th upsampling.
    """

    def __init__(
        self,
        channels: tuple[int, ...],
        strides: tuple[int, ...],
        latent_dim: int,
        *,
        kernel_size: int = 7,
        dilations: tuple[int, ...] = (1, 3, 9),
        compress: int = 2,
        causal: bool = False,
    ) -> None:
        super().__init__()
        if len(channels) != len(strides) + 1:
            raise ValueError("decoder needs one more channel width than strides")
        blocks: list[nn.Module] = [Conv1d(latent_dim, channels[0], 7, causal=causal)]
        for c_in, c_out, stride in zip(channels[:-1], channels[1:], strides):
            blocks.append(
                DecoderBlock(
                    c_in,
                    c_out,
                    stride,
                    kernel_size=kernel_size,
                    dilations=dilations,
                    compress=compress,
                    causal=causal,
                )
            )
        blocks += [Snake(channels[-1]), Conv1d(channels[-1], 1, 7, causal=causal), nn.Tanh()]
        self.layers = nn.Sequential(*blocks)

    def forward(self, latent: Tensor) -> Tensor:  # (B, D, F) -> (B, 1, F * hop)
        return self.layers(latent)


class FrameBlock(nn.Module):
    """A ConvNeXt block at the code frame rate (Vocos's backbone, with Snake for GELU):
    depthwise conv -> layer norm over channels -> 1x1 up -> Snake -> 1x1 down, scaled skip.

    `set_matmul_dtype(torch.bfloat16)` runs the two 1x1 layers, most of the block's work, in
    bf16 at inference (copies of their weights; the rest, and training, stay in fp32): on a
    CPU with bf16 units they take half the time or less."""

    matmul_weights: tuple[Tensor, Tensor, Tensor, Tensor] | None = None

    def __init__(self, dim: int, hidden: int, *, kernel_size: int, layer_scale: float) -> None:
        super().__init__()
        self.depthwise = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.up = nn.Conv1d(dim, hidden, 1)
        self.act = Snake(hidden)
        self.down = nn.Conv1d(hidden, dim, 1)
        self.scale = nn.Parameter(torch.full((dim, 1), layer_scale))  # (C, 1)
        self.scale.no_weight_decay = True

    def set_matmul_dtype(self, dtype: torch.dtype | None) -> None:
        """Low-precision copies of the 1x1 weights for inference, or None for fp32."""
        if dtype is None or dtype == torch.float32:
            self.matmul_weights = None
            return
        with torch.no_grad():
            self.matmul_weights = tuple(
                p.detach().to(dtype)
                for p in (self.up.weight, self.up.bias, self.down.weight, self.down.bias)
            )

    def forward(self, x: Tensor) -> Tensor:  # (B, C, F) -> (B, C, F)
        y = self.depthwise(x)
        y = self.norm(y.transpose(1, 2)).transpose(1, 2)
        if self.matmul_weights is None or _needs_grad(x, self.up.weight):
            y = self.down(self.act(self.up(y)))
        else:
            up_w, up_b, down_w, down_b = self.matmul_weights
            y = F.conv1d(y.to(up_w.dtype), up_w, up_b).float()
            y = F.conv1d(self.act(y).to(down_w.dtype), down_w, down_b).float()
        return x + self.scale * y


class _FrameStack(nn.Module):
    """What the STFT encoder and the iSTFT decoder share: the STFT's checks and window, and
    layer norm -> ConvNeXt blocks -> layer norm at the frame rate (`backbone`). Each adds
    its own `input` layer and `head`."""

    def __init__(
        self, hop_length: int, *, dim: int, hidden: int, layers: int, n_fft: int, kernel_size: int
    ) -> None:
        super().__init__()
        if n_fft < 2 * hop_length or n_fft % 2:
            raise ValueError(f"n_fft must be even and >= 2 * hop ({2 * hop_length}), got {n_fft}")
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.hop_length, self.n_fft, self.kernel_size = hop_length, n_fft, kernel_size
        self.input_norm = nn.LayerNorm(dim)
        self.blocks = nn.ModuleList(
            FrameBlock(dim, hidden, kernel_size=kernel_size, layer_scale=1.0 / layers)
            for _ in range(layers)
        )
        self.output_norm = nn.LayerNorm(dim)
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def backbone(self, x: Tensor) -> Tensor:  # (B, dim, F) -> (B, dim, F)
        x = self.input_norm(x.transpose(1, 2)).transpose(1, 2)
        for block in self.blocks:
            x = block(x)
        return self.output_norm(x.transpose(1, 2)).transpose(1, 2)


PHASE_HEADS = ("angle", "vector")


class IStftDecoder(_FrameStack):
    """Latent to waveform through a short-time spectrum (Vocos): every layer runs at the
    code frame rate, and a 1x1 head predicts each frame's log-magnitude and phase for an
    inverse STFT with hop `hop_length`. No transposed convolutions, no layer at the audio
    rate: the whole decoder costs about what one 24 kHz conv stage costs in `Decoder`.

    Non-causal only: the inverse STFT's window reaches `n_fft / 2` samples ahead.
    (B, latent_dim, F) -> (B, 1, F * hop_length).

    `phase` says how the head gives each bin's phase: "angle" (Vocos) reads it as a raw
    angle; "vector" reads a 2-D vector (re, im) whose direction is the phase. An angle is a
    wrapped, discontinuous function of the waveform, hard for a linear head to read out of
    a latent; a direction is what the STFT encoder's compressed (re, im) input already is,
    so a codec can carry the waveform's phase through nearly linear maps.
    """

    def __init__(
        self,
        latent_dim: int,
        hop_length: int,
        *,
        dim: int = 512,
        hidden: int = 1536,
        layers: int = 8,
        n_fft: int = 1280,
        kernel_size: int = 7,
        phase: str = "angle",
    ) -> None:
        super().__init__(
            hop_length, dim=dim, hidden=hidden, layers=layers, n_fft=n_fft, kernel_size=kernel_size
        )
        if phase not in PHASE_HEADS:
            raise ValueError(f"phase must be one of {PHASE_HEADS}, got {phase!r}")
        self.phase = phase
        self.input = weight_norm(nn.Conv1d(latent_dim, dim, kernel_size, padding=kernel_size // 2))
        self.bins = n_fft // 2 + 1
        # log-magnitude, then the phase: one angle or a (re, im) direction per bin
        self.head = nn.Conv1d(dim, self.bins * (2 if phase == "angle" else 3), 1)

    @torch.no_grad()
    def head_from_angle(self, head: nn.Conv1d) -> None:
        """Start this "vector" head from a trained "angle" head of the same width: the
        log-magnitude rows are copied, and each direction is (1, angle), which has the
        angle's sign and order and equals it near 0, so training starts from the old
        decoder's magnitudes with its phases bent rather than thrown away."""
        bins = self.bins
        if self.phase != "vector" or head.weight.shape != (2 * bins, *self.head.weight.shape[1:]):
            raise ValueError("head_from_angle needs a vector head and an angle head of its width")
        self.head.weight[:bins] = head.weight[:bins]
        self.head.bias[:bins] = head.bias[:bins]
        self.head.weight[bins : 2 * bins] = 0.0
        self.head.bias[bins : 2 * bins] = 1.0
        self.head.weight[2 * bins :] = head.weight[bins:]
        self.head.bias[2 * bins :] = head.bias[bins:]

    def receptive_span(self) -> int:
        """Samples of output that one latent frame's value can reach (both sides together)."""
        frames = (self.kernel_size - 1) * (len(self.blocks) + 1)
        return frames * self.hop_length + self.n_fft

    def spectrum(self, latent: Tensor) -> Tensor:  # (B, D, F) -> (B, n_fft/2 + 1, F) complex
        x = self.backbone(self.input(latent))
        bins = self.bins
        out = self.head(x).float()  # (B, (2 or 3) * bins, F)
        mag = out[:, :bins].clamp(max=6.0).exp()  # clamped: e^6 is far above any real bin
        if self.phase == "angle":
            return torch.polar(mag, out[:, bins:])
        re, im = out[:, bins : 2 * bins], out[:, 2 * bins :]
        norm = (re.square() + im.square() + 1e-8).sqrt()
        return torch.complex(mag * re / norm, mag * im / norm)

    def forward(self, latent: Tensor) -> Tensor:  # (B, D, F) -> (B, 1, F * hop)
        spec = self.spectrum(latent)
        wav = torch.istft(
            spec,
            self.n_fft,
            hop_length=self.hop_length,
            window=self.window,
            center=True,
            length=latent.shape[-1] * self.hop_length,
        )
        return wav.unsqueeze(1)


class StftEncoder(_FrameStack):
    """Waveform to latent through a short-time spectrum: the iSTFT decoder's mirror. An
    STFT with hop `hop_length` gives one frame per code frame; each frame's log-magnitude
    and its power-compressed complex spectrum (|X|^0.3 with the phase, so phase is there to
    keep) go through a 1x1 input layer and ConvNeXt blocks, all at the frame rate. A wide
    encoder this way costs what one 24 kHz conv stage of `Encoder` costs.

    Non-causal: the analysis window reaches `n_fft / 2` samples ahead.
    (B, 1, F * hop_length) -> (B, latent_dim, F).
    """

    def __init__(
        self,
        latent_dim: int,
        hop_length: int,
        *,
        dim: int = 512,
        hidden: int = 1536,
        layers: int = 8,
        n_fft: int = 1280,
        kernel_size: int = 7,
    ) -> None:
        super().__init__(
            hop_length, dim=dim, hidden=hidden, layers=layers, n_fft=n_fft, kernel_size=kernel_size
        )
        self.input = nn.Conv1d(3 * (n_fft // 2 + 1), dim, 1)
        self.head = weight_norm(nn.Conv1d(dim, latent_dim, 1))

    def receptive_span(self) -> int:
        """Samples of input that one latent frame's value reads (both sides together)."""
        frames = (self.kernel_size - 1) * len(self.blocks)
        return frames * self.hop_length + self.n_fft

    def features(self, wav: Tensor) -> Tensor:  # (B, 1, F * hop) -> (B, 3 * bins, F)
        frames = wav.shape[-1] // self.hop_length
        spec = torch.stft(
            wav[:, 0].float(),
            self.n_fft,
            hop_length=self.hop_length,
            window=self.window,
            center=True,
            pad_mode="constant",  # zeros: reflection fails on inputs shorter than n_fft / 2
            return_complex=True,
        )[..., :frames]  # (B, bins, F): frame f centred on sample f * hop, as the decoder's
        mag = spec.abs()
        compressed = spec * (mag + 1e-5).pow(-0.7)  # |X|^0.3 with X's phase
        log_mag = (mag + 1e-5).log()
        return torch.cat([log_mag, compressed.real, compressed.imag], dim=1)

    def forward(self, wav: Tensor) -> Tensor:  # (B, 1, F * hop) -> (B, D, F)
        return self.head(self.backbone(self.input(self.features(wav))))
