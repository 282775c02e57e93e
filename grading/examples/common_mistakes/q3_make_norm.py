if norm_type == "LN":
    return nn.BatchNorm2d(num_channels)
if norm_type == "IN":
    return nn.InstanceNorm2d(num_channels, affine=True)
return nn.GroupNorm(num_groups, num_channels)
