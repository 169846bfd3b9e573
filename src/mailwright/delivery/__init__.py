"""Delivery: submission (submit.py), send limits (limits.py), the durable outbound queue
(queue.py) and its runner (outbound.py, mx.py), DSNs (dsn.py) and SRS (srs.py).

DSNs (RFC 3464) go to the envelope sender, never to a null one: a bounce on 5xx or at expiry
(``queue_lifetime_seconds``, 5 days), and one delay notice per message once it has been
undeliverable for ``queue_delay_notice_after``. That is on by default at 4 hours (Sendmail's
``Timeout.queuewarn``, Exchange's delay DSN), unlike Postfix (``delay_warning_time = 0``) and
Exim (24 h): with a 5-day lifetime a sender should learn the same working day that a message
is stuck, and our queue only holds authenticated submissions and checked forwards, so the
backscatter that made Postfix turn it off does not apply. 0 turns it off.

Protocol and API code call `submit.submit`, `queue.enqueue` and the queue listing functions;
`runtime.background` starts one `outbound.QueueRunner` per process.
"""
