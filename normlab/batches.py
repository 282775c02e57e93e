"""Batches that live on the device: the whole uint8 dataset is copied there once, and each batch is gathered,
cropped, flipped and normalized there, so an epoch makes no host-to-device copy and needs no DataLoader."""
import torch
import torch.nn.functional as F

from normlab.data import MEAN, STD


def crop_at(images, rows, cols, padding):
    """Crop each zero-padded image at its own offset: images (N, C, H, W), rows/cols (N,) in [0, 2 * padding].

    One gather over the flattened padded images: a crop's pixel (i, j) is padded pixel (row + i, col + j)."""
    n, channels, height, width = images.shape
    padded_width = width + 2 * padding
    padded = F.pad(images, (padding, padding, padding, padding)).flatten(2)
    pixels = (torch.arange(height, device=images.device)[:, None] * padded_width
              + torch.arange(width, device=images.device)).flatten()
    index = (rows * padded_width + cols)[:, None] + pixels
    return padded.gather(2, index[:, None, :].expand(n, channels, height * width)).view(n, channels, height, width)


def flip_where(images, flips):
    """Mirror the images whose entry in flips (N,) is True, left to right."""
    return torch.where(flips[:, None, None, None], images.flip(3), images)


class DeviceBatches:
    """Batches of images that stay on the device as uint8: shuffled, augmented (a random crop of the image padded
    with `padding` zeros, a random mirroring if flip), normalized and laid out in memory_format.

    Every batch is full, so shapes never change: an epoch leaves out the last len(labels) % batch_size images of
    its order. The state of self.generator decides the next epoch's order, crops and flips, and nothing else does:
    restoring it (a resumed run) repeats them exactly."""

    def __init__(self, images, labels, device, batch_size, memory_format=torch.contiguous_format, seed=0,
                 padding=0, flip=False):
        if not 0 < batch_size <= len(labels):
            raise ValueError(f"batch size {batch_size} does not fit {len(labels)} images")
        self.images = images.to(device)
        self.labels = labels.to(device)
        self.device = device
        self.batch_size = batch_size
        self.memory_format = memory_format
        self.padding = padding
        self.flip = flip
        self.generator = torch.Generator().manual_seed(seed)
        shape = (1, 3, 1, 1)
        self.scale = (1 / (255 * torch.tensor(STD))).reshape(shape).to(device)
        self.shift = (-torch.tensor(MEAN) / torch.tensor(STD)).reshape(shape).to(device)

    def __len__(self):
        return len(self.labels) // self.batch_size

    def normalize(self, images):
        return (images.float() * self.scale + self.shift).contiguous(memory_format=self.memory_format)

    def epoch(self, shuffle=True):
        n = len(self.labels)
        order = torch.randperm(n, generator=self.generator) if shuffle else torch.arange(n)
        offsets = torch.randint(0, 2 * self.padding + 1, (2, n), generator=self.generator)
        flips = torch.rand(n, generator=self.generator) < 0.5
        order, offsets, flips = order.to(self.device), offsets.to(self.device), flips.to(self.device)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            index = order[start:start + self.batch_size]
            images = self.images[index]
            if self.padding:
                images = crop_at(images, offsets[0, index], offsets[1, index], self.padding)
            if self.flip:
                images = flip_where(images, flips[index])
            yield self.normalize(images), self.labels[index]


def eval_batch_size(test_size, largest):
    """The largest divisor of test_size up to largest, so that every evaluation batch has the same shape
    (10,000 test images and at most 1,000: 1,000)."""
    return max(size for size in range(1, min(test_size, largest) + 1) if test_size % size == 0)
