"""Storage layer: the database (SQLAlchemy 2 async) and the content-addressed blob store."""
