"""Tests of the Python bindings; a package so that the tutorial's
``from tests.test_gradients import gradient_check`` works from bindings/python."""
