"""Delivery: submission (submit.py), send limits (limits.py), the durable outbound queue
(queue.py) and its runner (outbound.py, mx.py), DSN bounces (dsn.py) and SRS (srs.py).

Protocol and API code call `submit.submit`, `queue.enqueue` and the queue listing functions;
`runtime.background` starts one `outbound.QueueRunner` per process.
"""
