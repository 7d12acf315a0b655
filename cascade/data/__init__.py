"""Datasets: real-format parsers, the synthetic demo suite, and the decoded-image cache."""
