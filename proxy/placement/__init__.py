"""Placement: where each new batch runs among the deployments (or pooled projects) serving its model.

`queued_tokens` estimates what a batch holds on an upstream's queue; `choice` orders the targets by weighted
headroom; `breaker` is the circuit breaker's rule; `claims` holds tokens on a target in one locked transaction so
replicas never overfill a quota together; `placer` loops over the candidates until one upstream takes the batch;
`state` shows it all (`vbp models`, `/metrics`); `pools` reads VBP_PROJECT_POOLS for the native door.
"""
