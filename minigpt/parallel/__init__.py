"""Hand-written parallel training on top of torch.distributed's collectives (lessons 12, 13).

`launch` starts and joins process groups (torchrun's environment, or `spawn` for tests and
lessons, with timeouts that name a failed rank); `ddp` is data parallelism with `naive`,
`bucketed` and `overlap` gradient averaging (`buckets` packs the gradients); `sampler` deals
each rank its share of the data; `zero` shards the optimizer state (ZeRO stage 1).
Pipeline parallelism: `schedules` (GPipe, 1F1B, ZB-H1 as pure functions, and their unit-time
simulation), `stages` (a DecoderLM cut by whole blocks), `executor` (one stage running a
schedule with point-to-point sends, recording its timeline), `pipeline` (stages x replicas,
the step the trainer calls). `run` is what `torchrun -m minigpt train --parallel MODE` runs.
"""
