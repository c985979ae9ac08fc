"""Uniform Resources: Bytewords, fountain-coded multipart URs, and UR text.

PSBTs and Coldstation's own documents cross the air gap as Blockchain Commons URs
(BCR-2020-005 text, BCR-2020-012 Bytewords, BCR-2024-001 multipart fountain codes) shown
as animated QR codes. This package is written here because no maintained Python library
exists: foundation-ur-py, the only port, is unmaintained. It reproduces the bc-ur
reference bit for bit (checked against the official vectors), so third-party wallets
read what we show, and it adds what an appliance needs on the receiving side: hostile
input refused with a reason instead of an exception, size caps checked before
allocation, a GF(2) decoder that needs fewer frames than peeling, and an optional
sender policy (``degree_floor``) that needs fewer still.

Modules: :mod:`.bytewords`, :mod:`.xoshiro` (seeded generator), :mod:`.sampler` (which
fragments a part mixes), :mod:`.fountain` (parts, encoder, decoder), :mod:`.ur` (text,
:class:`UREncoder`, :class:`URDecoder`).
"""

from shared.ur.bytewords import BytewordsError
from shared.ur.fountain import (
    DEFAULT_MAX_MESSAGE_LEN,
    FountainDecoder,
    FountainEncoder,
    FountainError,
    Part,
    Progress,
)
from shared.ur.ur import (
    UR,
    ReceiveState,
    ReceiveStatus,
    URDecoder,
    UREncoder,
    URError,
    decode_ur,
    encode_ur,
    upper,
)

__all__ = [
    "DEFAULT_MAX_MESSAGE_LEN",
    "UR",
    "BytewordsError",
    "FountainDecoder",
    "FountainEncoder",
    "FountainError",
    "Part",
    "Progress",
    "ReceiveState",
    "ReceiveStatus",
    "URDecoder",
    "UREncoder",
    "URError",
    "decode_ur",
    "encode_ur",
    "upper",
]
