"""ImageNet-style folders: ``root/train/<class>/*.jpg`` and ``root/val/<class>/*.jpg``.

Classes are the sorted sub-folder names of ``train/`` (label = position). The training and
evaluation pipelines read each file's bytes (``EncodedImages``) and decode them in MindSpore's C++
ops (``Decode``, or ``RandomCropDecodeResize``, which decodes only the crop). Before a file goes to
C++ its structure is checked here (JPEG markers and end of image, PNG chunks and their CRCs): a
truncated JPEG can crash MindSpore's decoder, and a C++ error cannot say which file failed. Other
formats (BMP, WebP, TIFF, ...) are decoded with PIL and handed on as an uncompressed BMP.
``FolderSource[i]`` decodes with PIL (bit-identical to the C++ decode for JPEG and PNG): the
teacher-cache replay path crops decoded images itself.

A corrupt file raises an error naming it, or with ``skip_corrupt`` is logged once and replaced: by the
next readable image in train, by a padding sample (label ``PAD_LABEL``, counted nowhere) in val.
"""
import io
import logging
import os
import struct
import zlib

import numpy as np
from PIL import Image

from .source import PAD_LABEL, ImageSource

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")

logger = logging.getLogger(__name__)

JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# JPEG frame types libjpeg decodes: baseline, extended and progressive Huffman
JPEG_FRAMES = (0xC0, 0xC1, 0xC2)
# markers without a length field: TEM, RST0-7 (SOI and EOI are handled apart)
JPEG_BARE_MARKERS = {0x01} | set(range(0xD0, 0xD8))


def list_classes(split_dir):
    """Sorted class-folder names of one split; ValueError when the split or its classes are missing."""
    if not os.path.isdir(split_dir):
        raise ValueError(f"dataset split not found: {split_dir} is not a directory")
    classes = sorted(entry.name for entry in os.scandir(split_dir)
                     if entry.is_dir() and not entry.name.startswith("."))
    if not classes:
        raise ValueError(f"no class folders in {split_dir} (expected one sub-folder per class)")
    return classes


def scan_image_folder(split_dir, classes):
    """``(paths, labels)`` of every image under ``split_dir/<class>``; an empty class is a ValueError."""
    paths, labels = [], []
    for label, name in enumerate(classes):
        class_dir = os.path.join(split_dir, name)
        if not os.path.isdir(class_dir):
            raise ValueError(f"class folder missing: {class_dir} (the train split has class '{name}')")
        found = []
        for folder, subdirs, files in os.walk(class_dir, followlinks=True):
            subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
            found.extend(os.path.join(folder, f) for f in sorted(files)
                         if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith("."))
        if not found:
            raise ValueError(f"empty class folder: {class_dir} has no images ({', '.join(IMAGE_EXTENSIONS)})")
        paths.extend(found)
        labels.extend([label] * len(found))
    return paths, labels


def read_image(path):
    """Decode one image file to an ``[H, W, 3]`` uint8 RGB array with PIL; ValueError naming the file if it cannot."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except Exception as err:  # PIL raises OSError, SyntaxError, DecompressionBombError, ...
        raise ValueError(f"cannot read image {path}: {type(err).__name__}: {err}") from None


def check_jpeg(data):
    """Why the JPEG ``data`` cannot be decoded whole: "" when its markers, frame and end of image are in
    place, None for a frame type MindSpore's decoder does not take."""
    pos, frame = 2, None
    while True:
        if pos + 4 > len(data) or data[pos] != 0xFF:
            return f"broken marker structure at byte {pos}"
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker in JPEG_BARE_MARKERS:
            pos += 2
            continue
        if marker == 0xD9:
            return "end of image before any scan"
        length = (data[pos + 2] << 8) | data[pos + 3]
        if length < 2 or pos + 2 + length > len(data):
            return f"segment 0x{marker:02X} at byte {pos} runs past the end of the file"
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # a start-of-frame
            if marker not in JPEG_FRAMES:
                return None  # lossless, arithmetic-coded or hierarchical: left to PIL
            if length < 8:
                return "start-of-frame segment too short"
            _, height, width, components = struct.unpack(">BHHB", data[pos + 4:pos + 10])
            if height == 0 or width == 0 or components not in (1, 3, 4):
                return f"bad frame: {width}x{height} with {components} components"
            frame = (height, width)
        if marker == 0xDA:  # start of scan: entropy-coded data follows
            if frame is None:
                return "scan before any frame header"
            # stuffing makes 0xFFD9 unique in the entropy-coded data: it is the end-of-image marker
            if data.rfind(b"\xff\xd9", pos + 2 + length) < 0:
                return "truncated (no end-of-image marker)"
            return ""
        pos += 2 + length


def check_png(data):
    """Why the PNG ``data`` cannot be decoded whole ("" when every chunk is whole, its CRC right and IEND present)."""
    pos = len(PNG_MAGIC)
    while pos + 12 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        end = pos + 8 + length
        if end + 4 > len(data):
            return f"chunk {kind!r} at byte {pos} runs past the end of the file"
        if zlib.crc32(data[pos + 4:end]) != struct.unpack(">I", data[end:end + 4])[0]:
            return f"chunk {kind!r} at byte {pos} has a wrong CRC"
        if kind == b"IEND":
            return ""
        pos = end + 4
    return "truncated (no IEND chunk)"


def as_bmp(image):
    """An ``[H, W, 3]`` uint8 array as the bytes of an uncompressed BMP file (C++ ``Decode`` reads it back exactly)."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="BMP")
    return np.frombuffer(buffer.getvalue(), dtype=np.uint8)


def read_file(path):
    """The bytes of a file in one unbuffered read (less CPU than ``open(path, "rb").read()``)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        chunks = []
        while True:  # one read for a regular file; loop for short reads (network file systems)
            chunk = os.read(fd, max(size + 1, 1 << 16))
            if not chunk:
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)
            chunks.append(chunk)
    finally:
        os.close(fd)


def read_encoded(path):
    """The bytes MindSpore's ``Decode`` gets for one file: a checked JPEG or PNG as it is, any other format
    decoded by PIL and re-encoded as BMP. ValueError naming the file when it is corrupt."""
    try:
        data = read_file(path)
    except OSError as err:
        raise ValueError(f"cannot read image {path}: {type(err).__name__}: {err}") from None
    if data.startswith(JPEG_MAGIC):
        problem = check_jpeg(data)
    elif data.startswith(PNG_MAGIC):
        problem = check_png(data)
    else:
        problem = None
    if problem is None:
        return as_bmp(read_image(path))
    if problem:
        raise ValueError(f"cannot read image {path}: {problem}")
    return np.frombuffer(data, dtype=np.uint8)


def pad_bytes():
    """The encoded image of a padding sample (8x8 black)."""
    return as_bmp(np.zeros((8, 8, 3), dtype=np.uint8))


class FolderSource(ImageSource):
    """Image files, decoded with PIL on access (the teacher-cache path); ``encoded()`` serves their bytes."""

    name = "imagefolder"
    # how many following files to try before giving up when skipping corrupt ones
    max_skips = 64

    def __init__(self, paths, labels, classes, skip_corrupt=False):
        super().__init__(labels)
        self.paths = list(paths)
        self.classes = list(classes)
        self.skip_corrupt = bool(skip_corrupt)
        self._reported = set()

    def load(self, index):
        return read_image(self.paths[index])

    def read_skipping(self, index, reader):
        """``(reader(path), label)`` of image ``index`` or, when it is corrupt, of the next readable one
        (each corrupt file is logged once per process)."""
        for step in range(min(self.max_skips, len(self)) + 1):
            position = (index + step) % len(self)
            try:
                return reader(self.paths[position]), np.int32(self.labels[position])
            except ValueError as err:
                self.report(err, self.paths[position])
        raise ValueError(f"cannot read image {self.paths[index]} nor the {self.max_skips} images after it")

    def report(self, err, path):
        if path not in self._reported:
            self._reported.add(path)
            logger.warning("skipping unreadable image: %s", err)

    def __getitem__(self, index):
        index = int(index)
        if index < 0 or not self.skip_corrupt:
            return super().__getitem__(index)  # a corrupt image raises, naming the file
        # the label must follow the image that replaced a corrupt one
        return self.read_skipping(index, read_image)

    def subset(self, indices):
        indices = np.asarray(indices, dtype=np.int64)
        return FolderSource([self.paths[i] for i in indices], self.labels[indices], self.classes, self.skip_corrupt)

    def encoded(self, replace_corrupt=True):
        """The same images as encoded bytes for C++ decoding (``EncodedImages``)."""
        return EncodedImages(self, replace_corrupt)


class EncodedImages:
    """``[i] -> (bytes uint8 [n], label int32)`` of a ``FolderSource``; index -1 is a padding sample.

    With the source's ``skip_corrupt``, a corrupt image is replaced by the next readable one
    (``replace_corrupt``, train) or by a padding sample (val: the count of evaluated images stays right).
    """

    def __init__(self, source, replace_corrupt=True):
        self.source, self.replace_corrupt = source, bool(replace_corrupt)
        self._pad = pad_bytes()

    def __len__(self):
        return len(self.source)

    def __getitem__(self, index):
        index = int(index)
        source = self.source
        if index < 0:
            return self._pad, np.int32(PAD_LABEL)
        if not source.skip_corrupt:
            return read_encoded(source.paths[index]), np.int32(source.labels[index])
        if self.replace_corrupt:
            return source.read_skipping(index, read_encoded)
        try:
            return read_encoded(source.paths[index]), np.int32(source.labels[index])
        except ValueError as err:
            source.report(err, source.paths[index])
            return self._pad, np.int32(PAD_LABEL)


def load_image_folder(root, split, num_classes=None, skip_corrupt=False):
    """The ``FolderSource`` of ``root/<split>``; labels come from the class folders of ``root/train``
    (or of the split itself when there is no ``train/``)."""
    split_dir = os.path.join(root, split)
    train_dir = os.path.join(root, "train")
    # an eval-only copy may hold just val/: its own class folders then define the labels
    classes = list_classes(train_dir if os.path.isdir(train_dir) else split_dir)
    if split != "train":
        found = list_classes(split_dir)
        extra = sorted(set(found) - set(classes))
        if extra:
            raise ValueError(f"{split_dir} has class folders that train/ lacks: {', '.join(extra[:5])}")
    if num_classes is not None and len(classes) != num_classes:
        raise ValueError(f"num_classes is {num_classes} but {train_dir if os.path.isdir(train_dir) else split_dir} "
                         f"has {len(classes)} class folders")
    paths, labels = scan_image_folder(split_dir, classes)
    return FolderSource(paths, labels, classes, skip_corrupt)
