"""The change feed: message added, flags changed, expunged, mailbox changed."""
