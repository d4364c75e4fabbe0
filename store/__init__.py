"""The model store that training writes and serving reads: BentoML models, checksums, pointer.

Below `training` and `serving`, above `model`: both import the store from here, so neither
imports the other (tests/test_house_rules.py checks it).
"""
