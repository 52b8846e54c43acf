"""Evaluations against simulated users (design §7): edit cost, and more to come."""
