"""Other ways of writing the notebook's answers, shared by the notebook, mutation and honest-student tests."""

LAYER_NORM_INSTANCE_NORM_AND_MANUAL_GROUPS = """
if norm_type == "IN":
    return nn.InstanceNorm2d(num_channels, affine=True)


class PerChannelAffineNorm(nn.Module):
    def __init__(self, groups):
        super().__init__()
        self.groups = groups
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))

    def forward(self, x):
        if self.groups == 1:
            x = nn.functional.layer_norm(x, x.shape[1:])
        else:
            grouped = x.reshape(x.shape[0], self.groups, -1)
            mean = grouped.mean(dim=-1, keepdim=True)
            var = grouped.var(dim=-1, unbiased=False, keepdim=True)
            x = ((grouped - mean) / torch.sqrt(var + 1e-5)).reshape(x.shape)
        return x * self.weight[:, None, None] + self.bias[:, None, None]


return PerChannelAffineNorm(1 if norm_type == "LN" else num_groups)
"""

SWAPPED_AXES = """
if norm_type == "LN":
    return nn.BatchNorm2d(num_channels)
if norm_type == "IN":
    return nn.GroupNorm(1, num_channels)
return nn.GroupNorm(num_channels, num_channels)
"""

PER_PIXEL_LN_AND_NO_AFFINE = """
class ChannelsLastLayerNorm(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm = nn.LayerNorm(num_channels)

    def forward(self, x):
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


if norm_type == "LN":
    return ChannelsLastLayerNorm()
if norm_type == "IN":
    return nn.InstanceNorm2d(num_channels)
return nn.GroupNorm(num_groups, num_channels, affine=False)
"""

# Every code answer of the notebook as a module class of its own.
MODULE_CLASSES = {
    "q3_make_norm": """
class OwnGroupNorm(nn.Module):
    def __init__(self, groups, channels):
        super().__init__()
        self.groups = groups
        self.gamma = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x):
        n = x.shape[0]
        grouped = x.reshape(n, self.groups, -1)
        mean = grouped.mean(-1, keepdim=True)
        var = ((grouped - mean) ** 2).mean(-1, keepdim=True)
        return ((grouped - mean) / (var + 1e-5).sqrt()).reshape(x.shape) * self.gamma + self.beta


return OwnGroupNorm({"LN": 1, "IN": num_channels, "GN": num_groups}[norm_type], num_channels)
""",
    "q3_make_shortcut": """
class Projection(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False)
        self.norm = make_norm(norm_type, out_channels, num_groups)

    def forward(self, x):
        return self.norm(self.conv(x))


return Projection()
""",
    "q4_make_no_norm": """
class NoNorm(nn.Module):
    def forward(self, x):
        return x


return NoNorm()
""",
    "q5_make_cifar_stem": """
class CifarStem(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, out_channels, 3, padding=1, bias=False)
        self.norm = make_norm(norm_type, out_channels, num_groups=num_groups)

    def forward(self, x):
        return nn.functional.relu(self.norm(self.conv(x)))


return CifarStem()
""",
}
