if norm_type == "LN":
    return nn.GroupNorm(1, num_channels)
if norm_type == "IN":
    return nn.GroupNorm(num_channels, num_channels)
return nn.GroupNorm(num_groups, num_channels)
