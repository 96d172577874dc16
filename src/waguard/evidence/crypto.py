"""AES-256-GCM over files, streamed, for encrypted bundles.

One fresh data key per bundle (from Vault transit), so a random 96-bit nonce is never reused under a
key. The tag is stored in the signed manifest rather than appended, so decryption can check it
without seeking. Decryption writes plaintext to a scratch file and only the caller's successful
return (after `finalize` checked the tag) makes it usable; on a bad tag the file is deleted.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

CHUNK = 1 << 20
NONCE_BYTES = 12


class DecryptionFailed(ValueError):
    """The ciphertext, nonce, tag or associated data does not match the key."""


def encrypt_file(src: Path, dst: Path, key: bytes, aad: bytes) -> tuple[bytes, bytes]:
    """Encrypt `src` into `dst`; return (nonce, tag). Memory: one chunk."""
    nonce = os.urandom(NONCE_BYTES)
    encryptor = Cipher(algorithms.AES(key), modes.GCM(nonce)).encryptor()
    encryptor.authenticate_additional_data(aad)
    with src.open("rb") as fin, dst.open("wb") as fout:
        while chunk := fin.read(CHUNK):
            fout.write(encryptor.update(chunk))
        fout.write(encryptor.finalize())
    return nonce, encryptor.tag


def decrypt_stream(fin: BinaryIO, dst: Path, key: bytes, nonce: bytes, tag: bytes, aad: bytes) -> None:
    """Decrypt the readable binary stream `fin` into `dst`.

    Raises:
        DecryptionFailed: wrong key, or the ciphertext or its parameters were changed (dst removed).
    """
    from cryptography.exceptions import InvalidTag

    if len(key) != 32 or len(nonce) != NONCE_BYTES or len(tag) != 16:
        raise DecryptionFailed("data key, nonce or tag has the wrong length")
    decryptor = Cipher(algorithms.AES(key), modes.GCM(nonce, tag)).decryptor()
    decryptor.authenticate_additional_data(aad)
    try:
        with dst.open("wb") as fout:
            while chunk := fin.read(CHUNK):
                fout.write(decryptor.update(chunk))
            fout.write(decryptor.finalize())
    except InvalidTag:
        dst.unlink(missing_ok=True)
        raise DecryptionFailed(
            "payload does not decrypt: wrong data key, or the ciphertext was changed"
        ) from None
