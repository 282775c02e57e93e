"""Other ways of writing make_norm's BLOCK 1.1 region, shared by the notebook tests and the mutation tests."""

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
