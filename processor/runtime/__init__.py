"""The runtime: what runs a stream. The worker (discovery, leases, lineage, cleanup), a
shard's run (restarts, renewals, figures), the shard reader (the source-agnostic
GetRecords loop, a step generator that yields its waits), the step pool that runs many
readers on a few threads, rate limits, and the fleet that runs several streams' workers on
one main loop.

It sits above ``core``, ``sources`` and ``leases`` and below ``app``: the layers import one
way (``make lint`` checks it, ADR 0027)."""
