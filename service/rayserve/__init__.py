"""Serving the model store on a Ray cluster with Ray Serve (the `ray` extra).

The same FastAPI app runs in an ingress deployment (`app.Ingress`): it validates and preprocesses every
request with the learner's own pipeline, as a single server does, and sends the prepared input to the
model's own deployment (`replica.ModelReplica`), whose replicas batch and run the forward. A reload rolls
through a model's replicas before the ingress swaps its own version (`board.ReloadBoard`).

Importing this package needs `ray[serve]`; nothing else in `service` imports it.
"""
