"""Tests of proxy.money and proxy.metering."""
