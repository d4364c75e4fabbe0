"""The `netprog` command line: training's and serving's commands under one name."""
