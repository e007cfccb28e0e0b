"""KCL MultiLang mode: `dsp multilang` runs unchanged amazon_kclpy record processors.

:mod:`.protocol` (the wire messages and the checkpoint rule, pure), :mod:`.child` (one child
process), :mod:`.shard` (one shard's conversation, a ShardTarget), :mod:`.properties`
(KCL ``.properties`` files as settings).
"""
