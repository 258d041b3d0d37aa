"""Hand-written parallel training on top of torch.distributed's collectives (lesson 12).

`launch` starts and joins process groups (torchrun's environment, or `spawn` for tests and
lessons, with timeouts that name a failed rank); `ddp` is data parallelism with `naive`,
`bucketed` and `overlap` gradient averaging (`buckets` packs the gradients); `sampler` deals
each rank its share of the data; `zero` shards the optimizer state (ZeRO stage 1).
"""
