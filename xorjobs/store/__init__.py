"""The store: SQLAlchemy tables for sweeps, jobs and costs, their engine, and the queries on them."""
