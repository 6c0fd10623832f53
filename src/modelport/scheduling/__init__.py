"""Scheduling: how requests reach model instances (direct, dynamic batching) and the instance pool."""
