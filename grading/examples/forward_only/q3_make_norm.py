if norm_type == "LN":
    return nn.GroupNorm(1, num_channels)
if norm_type == "IN":
    return nn.InstanceNorm2d(num_channels, affine=True)
return nn.GroupNorm(2, num_channels)  # forgot num_groups
