"""vocalis neural audio codec: the `CompressionModel` interface and the `Codec` model.

Light on purpose: importing `codec` pulls in torch and the model, never training code.
"""

from codec.interface import CompressionModel
from codec.model import Codec, CodecDims, CodecOutput, load_codec, save_codec

__all__ = ["Codec", "CodecDims", "CodecOutput", "CompressionModel", "load_codec", "save_codec"]
