"""Everything that decides where a job goes: the registry of nodes fed by heartbeats (registry, node,
model_index), which heartbeats are admitted and how the hub reaches a node (admission), the capacity policy
and its ranking (policy, ranking), what the hub learns of each node's speed (speeds), sticky sessions
(sessions), routes a node lacks (unserved), the wait queue (waitqueue) and placement, which asks the policy
and queues jobs at the hub (placement).

May import: guard (who the caller is, for fair turns and sessions), the core modules and `shared`.
"""
