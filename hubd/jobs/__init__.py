"""What happens to a job: the job (job), dispatch to the chosen node with failover before the first byte
(dispatch), the ledger that owns each job from arrival to end (ledger: admission, jobs in progress, counters,
the journal record, watchers such as the metrics), the job's record (record), async jobs that outlive their
caller (durable, runs) and the journal in SQLite (journal).

May import: routing, guard, the core modules (settings, errors, keys) and `shared`. Never api, fleet or ops:
the metrics watch the ledger (registered by hubd.app), they are not called by name.
"""
