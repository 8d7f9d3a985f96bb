"""crc32c masking, varints, Snappy, the sstable layout and slice keys, checked against known bytes."""

from __future__ import annotations

import contextlib
import random
import re

import pytest
import snappy as reference_snappy

from airflow_savedmodel.errors import ChecksumError, FormatError
from airflow_savedmodel.format import ordered_code, snappy, sstable, varint
from airflow_savedmodel.format.crc import crc32c, mask, unmask
from airflow_savedmodel.protos import tensor_bundle_pb2


def test_crc32c_check_value_and_mask_round_trip() -> None:
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"56789", crc32c(b"1234")) == 0xE3069283
    assert mask(0) == 0xA282EAD8
    for value in (0, 1, 0xFFFFFFFF, 0x12345678, crc32c(b"abc")):
        assert unmask(mask(value)) == value


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 2**32, 2**63 - 1, 2**64 - 1])
def test_varint_round_trip(value: int) -> None:
    data = varint.encode(value)
    assert varint.decode(data, 0, "x") == (value, len(data))


def test_varint_errors_name_the_source() -> None:
    with pytest.raises(FormatError, match="where: truncated varint"):
        varint.decode(b"\x80\x80", 0, "where")
    with pytest.raises(FormatError, match="longer than 10 bytes"):
        varint.decode(b"\xff" * 11, 0, "where")


@pytest.mark.parametrize("seed", range(8))
def test_snappy_decodes_what_the_reference_compresses(seed: int) -> None:
    rng = random.Random(seed)
    words = [bytes(rng.randrange(97, 123) for _ in range(rng.randrange(1, 12))) for _ in range(50)]
    data = b"".join(rng.choice(words) for _ in range(rng.randrange(0, 20000)))
    if seed % 2:
        data += bytes(rng.randrange(256) for _ in range(3000)) + b"\0" * 70000
    compressed = reference_snappy.compress(data)
    assert snappy.decompress(compressed, "t") == data


def test_snappy_rejects_corrupt_input() -> None:
    good = reference_snappy.compress(b"abcabcabcabcabcabc" * 100)
    for i in range(len(good)):
        for flip in (0x01, 0x80, 0xFF):
            bad = bytearray(good)
            bad[i] ^= flip
            with contextlib.suppress(FormatError):  # any outcome but a raw exception is fine
                snappy.decompress(bytes(bad), "t")
    with pytest.raises(FormatError, match="claims"):
        snappy.decompress(varint.encode(2**31) + b"\x00a", "t")
    with pytest.raises(FormatError):
        snappy.decompress(good[:-3], "t")


def _worked_example_items() -> list[tuple[bytes, bytes]]:
    """The four-tensor bundle of FORMAT.md 2.2, whose bytes TensorFlow 2.21 wrote."""
    header = tensor_bundle_pb2.BundleHeaderProto(num_shards=1)
    header.version.producer = 1

    def entry(dtype: int, dims: list[int], offset: int, size: int, crc: int) -> bytes:
        e = tensor_bundle_pb2.BundleEntryProto(dtype=dtype, offset=offset, size=size, crc32c=crc)
        e.shape.SetInParent()
        for d in dims:
            e.shape.dim.add(size=d)
        return e.SerializeToString(deterministic=True)

    return [
        (b"", header.SerializeToString()),
        (b"a/b", entry(1, [2, 3], 0, 24, 0x173DDBC0)),
        (b"flag", entry(10, [2], 24, 2, 0x81CEB05F)),
        (b"s", entry(7, [3], 26, 13, 0x13822C17)),
        (b"step", entry(9, [], 39, 8, 0x3E04B2EA)),
    ]


TF_WORKED_EXAMPLE_INDEX = bytes.fromhex(
    "000006080"
    "11a020801"
    "000313612f62080112081202080212020803281835c0db3d17"
    "00041166"
    "6c616708"
    "0a1204120208022018280235"
    "5fb0ce81"
    "000111730807120412020803201a280d35172c8213"
    "01030d746570080912002027280835eab2043e"
    "0000000001000000"
    "00aa5996f3"
    "000000000100000000c0f2a1b0"
    "000102740"
    "06a00000000010000000041305129"
    "6f087c0e" + "00" * 36 + "57fb808b247547db"
)


def test_table_builder_matches_tensorflow_bytes() -> None:
    built = sstable.build_table(_worked_example_items())
    assert built == TF_WORKED_EXAMPLE_INDEX
    assert list(sstable.read_table(built, "ckpt.index")) == _worked_example_items()


def test_table_with_many_blocks_round_trips() -> None:
    items = [(f"layer_{i:05d}/kernel".encode(), bytes([i % 251]) * (i % 97)) for i in range(9000)]
    data = sstable.build_table(items)
    assert list(sstable.read_table(data, "t")) == items


def test_table_errors() -> None:
    data = sstable.build_table(_worked_example_items())
    with pytest.raises(FormatError, match="bad magic"):
        list(sstable.read_table(data[:-1] + b"\x00", "t.index"))
    with pytest.raises(FormatError, match="too short"):
        list(sstable.read_table(data[:20], "t.index"))
    corrupt = bytearray(data)
    corrupt[12] ^= 0x40
    with pytest.raises(
        ChecksumError, match=re.escape("t.index: data block at offset 0: block checksum mismatch")
    ):
        list(sstable.read_table(bytes(corrupt), "t.index"))
    with pytest.raises(ValueError, match="strictly increasing"):
        sstable.build_table([(b"b", b""), (b"a", b"")])


def test_slice_keys_match_tensorflow() -> None:
    assert ordered_code.slice_key("p", [(0, 3), (0, 2)]) == bytes.fromhex("00") + b"p" + bytes.fromhex(
        "0001010280838082"
    )
    assert ordered_code.slice_key("p", [(3, 3), (0, 2)]).endswith(bytes.fromhex("83838082"))
    assert ordered_code.slice_key("x", [(0, -1)]).endswith(bytes.fromhex("807f"))
    assert ordered_code.num_increasing(0) == b"\x00"
    assert ordered_code.num_increasing(2) == b"\x01\x02"
    assert ordered_code.num_increasing(300) == b"\x02\x01\x2c"


@pytest.mark.parametrize("value", [-(2**40), -65, -64, -1, 0, 63, 64, 8191, 8192, 2**40, 2**62])
def test_signed_num_increasing_preserves_order(value: int) -> None:
    encoded = ordered_code.signed_num_increasing(value)
    assert ordered_code.signed_num_increasing(value + 1) > encoded
    assert ordered_code.signed_num_increasing(value - 1) < encoded


def test_gcsfs_token_modes_are_not_secrets_but_tokens_are() -> None:
    """``token="anon"`` is a way to get credentials, not one: registering it with Airflow's
    masker only logs "Skipping masking for a secret as it's too short" in every gs:// task."""
    from airflow_savedmodel.location import secret_values

    assert secret_values({"token": "anon"}) == []
    assert secret_values({"token": "google_default", "project": "p"}) == []
    assert secret_values({"token": "ya29.a-real-access-token"}) == ["ya29.a-real-access-token"]
    assert secret_values({"key": "AKIA", "secret": "s3cr3t"}) == ["AKIA", "s3cr3t"]
