"""Benchmarks: model quality, training cost, serving and prognosis speed (``make bench``)."""
