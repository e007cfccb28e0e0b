"""Who reads which shard: the lease model, the take/steal policy, the stores, the worker."""

from processor.leases.dynamodb import DynamoDBLeaseStore
from processor.leases.memory import MemoryLeaseStore
from processor.leases.model import Lease, LeaseStore
from processor.leases.policy import lease_to_steal, leases_to_take

__all__ = [
    "DynamoDBLeaseStore",
    "Lease",
    "LeaseStore",
    "MemoryLeaseStore",
    "lease_to_steal",
    "leases_to_take",
]
